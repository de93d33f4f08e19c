"""Fixtures for the browser tests: the built site on localhost, headless Chromium, a page.

The site must have been built first (``nox -s docs`` -> ``docs/_build/html``); without it the
tests fail. Chromium is Debian's (``apt-get install chromium``), driven by Playwright's Python
package; set ``ATTNLENS_CHROMIUM`` to use another binary. Without Chromium the tests are
skipped, except on CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ._site import CHROMIUM_ARGS, Tab, on_ci, require_site, watch_page


def _unavailable(reason: str) -> None:
    if on_ci():
        pytest.fail(f"{reason} (required on CI)", pytrace=False)
    pytest.skip(reason)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def site() -> Path:
    return require_site()


@pytest.fixture(scope="session")
def base_url(site: Path) -> Iterator[str]:
    """``http://127.0.0.1:<ephemeral port>`` serving docs/_build/html."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser(site: Path) -> Iterator[Any]:
    executable = (
        os.environ.get("ATTNLENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    )
    if not Path(executable).is_file():
        _unavailable(f"Chromium not found at {executable} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def tab(context: Any, base_url: str) -> Iterator[Tab]:
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield Tab(page, watch_page(page), base_url)
    page.close()
