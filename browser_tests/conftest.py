"""Fixtures for reading the built HTML book in headless Chromium, driven by Playwright.

Kept outside ``tests/`` on purpose: these tests need a built book and a browser, so plain
``pytest tests`` never collects them; ``make test`` runs them after the HTML build.

Options (or environment variables):

``--html-dir`` / ``BOOK_HTML_DIR``
    The built HTML (default ``_build/html``).
``--screenshot-dir`` / ``BOOK_SCREENSHOT_DIR``
    Where one full-page PNG per page goes (default: ``screenshots/`` next to the HTML dir, i.e.
    ``_build/screenshots``).
``--chromium`` / ``CHROMIUM``
    The browser executable (default ``/usr/bin/chromium``, Debian package ``chromium``).
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

from .book_pages import CHROMIUM_ARGS, PageReport, content_pages, read_page

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    group = parser.getgroup("book", "reading the built book in a browser")
    group.addoption(
        "--html-dir",
        default=os.environ.get("BOOK_HTML_DIR", str(REPO / "_build" / "html")),
        help="the built HTML book (default _build/html, env BOOK_HTML_DIR)",
    )
    group.addoption(
        "--screenshot-dir",
        default=os.environ.get("BOOK_SCREENSHOT_DIR"),
        help="where page screenshots go (default: screenshots/ beside the HTML dir)",
    )
    group.addoption(
        "--chromium",
        default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        help="Chromium executable (default /usr/bin/chromium, env CHROMIUM)",
    )


def _html_dir(config) -> Path:
    return Path(config.getoption("--html-dir")).resolve()


def pytest_generate_tests(metafunc):
    """One test per built page: the pages are discovered from the HTML, not listed by hand."""
    if "page_path" not in metafunc.fixturenames:
        return
    html_dir = _html_dir(metafunc.config)
    pages = content_pages(html_dir)
    if not pages:
        raise pytest.UsageError(
            f"no built book in {html_dir}: build it first (make book), or pass --html-dir"
        )
    metafunc.parametrize("page_path", pages)


@pytest.fixture(scope="session")
def html_dir(pytestconfig) -> Path:
    return _html_dir(pytestconfig)


@pytest.fixture(scope="session")
def screenshot_dir(pytestconfig, html_dir) -> Path:
    chosen = pytestconfig.getoption("--screenshot-dir")
    out = Path(chosen).resolve() if chosen else html_dir.parent / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    # Screenshots of pages that no longer exist would mislead whoever looks at the folder.
    for old in out.rglob("*.png"):
        old.unlink()
    return out


@pytest.fixture(scope="session")
def base_url(html_dir):
    """Serve the book over HTTP on the loopback interface (file:// blocks fetch() for search)."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(pytestconfig):
    from playwright.sync_api import sync_playwright

    executable = Path(pytestconfig.getoption("--chromium"))
    if not executable.exists():
        pytest.fail(
            f"Chromium not found at {executable}: install the Debian/Ubuntu package "
            "(sudo apt-get install chromium) or pass --chromium /path/to/chromium",
            pytrace=False,
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def reports(browser, base_url, html_dir, screenshot_dir):
    """Each page is opened once; every test about that page reads the same report."""
    cache: dict[str, PageReport] = {}

    def get(page_path: str) -> PageReport:
        if page_path not in cache:
            cache[page_path] = read_page(browser, base_url, html_dir, page_path, screenshot_dir)
        return cache[page_path]

    yield get
    summary = screenshot_dir / "images-without-alt-text.txt"
    lines = [f"{r.path}: {img}" for r in cache.values() for img in r.images_without_alt]
    summary.write_text("\n".join(lines) + "\n" if lines else "")
