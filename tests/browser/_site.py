"""Helpers of the browser tests: where the site is, and a page whose problems are recorded.

The site must have been built first (``nox -s docs`` -> ``docs/_build/html``); without it the
tests fail. Chromium is Debian's (``apt-get install chromium``), driven by Playwright's Python
package; set ``ATTNLENS_CHROMIUM`` to use another binary. Without Chromium the tests are
skipped, except on CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "docs" / "_build" / "html"
LANGUAGES = ("en", "ja")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1"}


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_site() -> Path:
    """The built site, or a test failure (not a skip) saying how to build it."""
    missing = [SITE / lang / "index.html" for lang in LANGUAGES if not (SITE / lang).is_dir()]
    if not (SITE / "index.html").is_file():
        missing.append(SITE / "index.html")
    if missing:
        pytest.fail(
            f"the built site is missing ({', '.join(str(m) for m in missing)}): "
            "run nox -s docs first",
            pytrace=False,
        )
    return SITE


@dataclass
class Watch:
    """What went wrong while a page was open."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"uncaught exception: {m}" for m in self.page_errors]
            + [f"failed request: {m}" for m in self.failed_requests]
            + [f"request to another host (blocked): {m}" for m in self.external_requests]
        )

    def clear(self) -> None:
        for items in (
            self.console_errors,
            self.page_errors,
            self.failed_requests,
            self.external_requests,
        ):
            items.clear()

    def assert_clean(self, where: str) -> None:
        problems = self.problems()
        assert not problems, f"{where}:\n  " + "\n  ".join(problems)


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "file", "chrome-error"):
        return True
    return parts.hostname in LOCAL_HOSTS


def watch_page(page: Any) -> Watch:
    """Record console errors, uncaught exceptions, failed and external requests of ``page``.

    Every request that would leave 127.0.0.1 is aborted and recorded: the site must work
    offline.
    """
    watch = Watch()

    def on_route(route: Any) -> None:
        url = route.request.url
        if _is_local(url):
            route.continue_()
        else:
            watch.external_requests.append(url)
            route.abort("blockedbyclient")

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            location = msg.location or {}
            watch.console_errors.append(f"{msg.text} ({location.get('url', '?')})")

    def on_request_failed(request: Any) -> None:
        if _is_local(request.url):  # external ones are already recorded
            watch.failed_requests.append(f"{request.url}: {request.failure}")

    def on_response(response: Any) -> None:
        if response.status >= 400:
            watch.failed_requests.append(f"{response.url}: HTTP {response.status}")

    page.route("**/*", on_route)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))
    page.on("requestfailed", on_request_failed)
    page.on("response", on_response)
    return watch


@dataclass
class Tab:
    """A browser page on the served site, with its problems recorded in ``watch``."""

    page: Any
    watch: Watch
    base_url: str

    def open(self, path: str, *, settle: bool = True) -> Any:
        """Go to ``path`` (relative to the site root); wait until the network is idle."""
        response = self.page.goto(f"{self.base_url}/{path.lstrip('/')}", wait_until="load")
        if settle:
            self.page.wait_for_load_state("networkidle")
        return response

    def path(self) -> str:
        """The current URL's path relative to the site root."""
        return urlsplit(self.page.url).path.lstrip("/")
