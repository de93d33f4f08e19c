"""Helpers of the tests of the interactive views: parse their HTML, open them in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("ATTNLENS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Collector(HTMLParser):
    """Elements with their attributes, text per element, and script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.texts: dict[int, str] = {}
        self._stack: list[int] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")
        if tag not in {"input", "br", "meta"}:
            self._stack.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False
        if self._stack and tag not in {"input", "br", "meta"}:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        elif self._stack:
            index = self._stack[-1]
            self.texts[index] = self.texts.get(index, "") + data

    def find(self, tag: str, cls: str) -> list[tuple[int, dict[str, str | None]]]:
        return [
            (i, attrs)
            for i, (name, attrs) in enumerate(self.elements)
            if name == tag and cls in (attrs.get("class") or "").split()
        ]


def parse(markup: str) -> Collector:
    """The elements, texts and scripts of ``markup``."""
    parser = Collector()
    parser.feed(markup)
    parser.close()
    return parser


def embedded(script: str, name: str = "data") -> dict[str, Any]:
    """The JSON object assigned to ``var <name>`` in a view's script."""
    match = re.search(rf"var {name} = (\{{.*?\}});\n", script)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


@contextmanager
def chromium_page(path: Path, *, lang: str | None = None) -> Iterator[tuple[Any, list[str]]]:
    """Open ``path`` in headless Chromium; yield the page and a list that collects problems.

    Problems are uncaught exceptions, console errors and dialogs (a token's script that
    ran). Skips without Chromium, except on CI (``CI`` set), where it fails.
    """
    if shutil.which(str(CHROMIUM)) is None:
        reason = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
        if os.environ.get("CI"):  # .ci/run installs it: a missing browser is a CI failure
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    from playwright import sync_api  # in the test group

    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 900, "height": 900}, locale="en-US" if lang is None else lang
            )
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on(
                "dialog",
                lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()),
            )
            page.on("pageerror", lambda error: problems.append(f"exception: {error}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console: {msg.text}") if msg.type == "error" else None
                ),
            )
            page.goto(path.as_uri())
            yield page, problems
        finally:
            browser.close()


def page_with(*fragments: str, lang: str | None, tmp_path: Path, name: str = "page.html") -> Path:
    """Write a page holding ``fragments``, with ``<html lang>`` set unless ``lang`` is None."""
    attr = "" if lang is None else f' lang="{lang}"'
    body = "\n".join(fragments)
    path = tmp_path / name
    path.write_text(
        f'<!DOCTYPE html>\n<html{attr}>\n<head><meta charset="utf-8"><title>t</title></head>\n'
        f"<body>\n{body}\n</body>\n</html>\n",
        encoding="utf-8",
    )
    return path
