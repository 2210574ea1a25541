"""A real browser reads every built page of the book.

Each page is opened once in headless Chromium (see conftest.py); the tests below check what a
reader would notice: untypeset math, broken images, images without alt text, dead links and
anchors, script errors, requests leaving the machine (the book must read offline), and the search
page.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from .book_pages import alt_problem, anchors_in, check_internal_link, open_page

REPO = Path(__file__).resolve().parent.parent


def _listing(items) -> str:
    return "\n  " + "\n  ".join(str(i) for i in items)


def test_math_is_typeset(page_path, reports):
    r = reports(page_path)
    problems = (
        [f"not typeset: {m}" for m in r.untypeset_math]
        + [f"TeX error: {m}" for m in r.math_errors]
        + [f"raw TeX in the text (the parser missed it): {m}" for m in r.raw_math_text]
    )
    assert not problems, f"math problems on {page_path}:{_listing(problems)}"


def test_images_load(page_path, reports):
    r = reports(page_path)
    assert not r.broken_images, (
        f"images that did not load on {page_path}:{_listing(r.broken_images)}"
    )


def test_images_have_alt_text(page_path, reports):
    """Every content image carries alt text that describes it (for a notebook figure: the cell's
    ``mystnb: image: alt`` metadata), not its file path, which myst-nb writes by default."""
    r = reports(page_path)
    assert not r.images_without_alt, (
        f"images without descriptive alt text on {page_path}:{_listing(r.images_without_alt)}"
    )


def test_alt_text_rule():
    """The rule above accepts a description and rejects what myst-nb and Sphinx write when the
    author gave none (the image's own URI, relative or absolute) and missing or empty alt."""
    src = "../_images/3f2a9c.png"
    described = {"src": src, "alt": "Line plot of probability against class index"}
    assert alt_problem(described) is None
    for alt in (None, "", "  ", src, "3f2a9c.png", "_images/3f2a9c.png", "/x/_images/other.PNG"):
        assert alt_problem({"src": src, "alt": alt}) is not None, alt


def test_internal_links_and_anchors_resolve(page_path, reports):
    r = reports(page_path)
    assert not r.broken_links, f"broken links on {page_path}:{_listing(r.broken_links)}"


def test_download_menu_offers_the_book_pdf_and_the_page_source(page_path, reports):
    """Every page of the book (those in _toc.yml) has a download menu whose links resolve: the
    whole book as one PDF, and the page's own source, the .ipynb for a chapter notebook."""
    toc_pages = {f"{re.sub(r'[.](md|ipynb)$', '', f)}.html" for f in _toc_files(_toc())}
    r = reports(page_path)
    if page_path not in toc_pages:
        return  # generated pages (search, index) have no source and no download menu
    pdf, source = r.downloads.get("book_pdf"), r.downloads.get("source")
    assert pdf, f"{page_path}: no link to the book's PDF in the download menu"
    assert pdf["status"] == 200 and pdf["head"].startswith("%PDF-"), (page_path, pdf)
    assert pdf["size"] > 100_000, (page_path, pdf["size"])
    assert source and source["status"] == 200, (page_path, source)
    notebook = REPO / Path(page_path).with_suffix(".ipynb")
    if notebook.is_file():
        assert source["href"].endswith(notebook.name), (page_path, source["href"])
        assert '"nbformat"' in source["head"] or '"cells"' in source["head"], source["head"]


def test_no_console_errors(page_path, reports):
    r = reports(page_path)
    problems = r.console_errors + r.failed_requests
    assert not problems, f"console errors / failed requests on {page_path}:{_listing(problems)}"


def test_no_request_leaves_localhost(page_path, reports):
    r = reports(page_path)
    assert r.requests > 0
    assert not r.external_requests, (
        f"{page_path} tried to fetch from outside localhost (blocked):"
        f"{_listing(r.external_requests)}"
    )


def test_screenshot_saved(page_path, reports):
    r = reports(page_path)
    png = r.screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000, r.screenshot


def _toc_files(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file"):
                found.append(str(value))
            else:
                found += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += _toc_files(item)
    return found


def _toc() -> dict:
    return yaml.safe_load((REPO / "_toc.yml").read_text())


def test_every_toc_entry_was_built(html_dir):
    files = _toc_files(_toc())
    assert files, "_toc.yml lists no pages"
    missing = [
        f
        for f in files
        if not (html_dir / re.sub(r"\.(md|ipynb)$", "", f)).with_suffix(".html").is_file()
    ]
    assert not missing, f"pages in _toc.yml without built HTML:{_listing(missing)}"


def test_index_redirects_to_root_page(browser, base_url, html_dir):
    from .book_pages import PageReport

    root = yaml.safe_load((REPO / "_toc.yml").read_text())["root"]
    report = PageReport(path="index.html")
    context, page = open_page(browser, f"{base_url}/", report)
    try:
        page.wait_for_url(f"{base_url}/{root}.html", timeout=10_000)
    finally:
        context.close()
    assert not report.console_errors + report.external_requests + report.failed_requests


def test_search_finds_softmax(browser, base_url, html_dir, screenshot_dir):
    from .book_pages import PageReport

    report = PageReport(path="search.html?q=softmax")
    context, page = open_page(browser, f"{base_url}/search.html?q=softmax", report)
    try:
        # Sphinx's searchtools fills #search-results, then writes a summary line.
        page.wait_for_function(
            "() => { const s = document.querySelector('#search-results .search-summary');"
            " return s && s.textContent.trim().length > 0; }",
            timeout=20_000,
        )
        summary = page.inner_text("#search-results .search-summary")
        hits = page.eval_on_selector_all(
            "#search-results ul.search li a", "as => as.map(a => a.href)"
        )
        page.screenshot(path=str(screenshot_dir / "search-softmax.png"), full_page=True)
    finally:
        context.close()
    assert hits, f"search for 'softmax' returned no results; summary: {summary!r}"
    broken = [h for h in hits if check_internal_link(html_dir, h.split("?")[0])]
    assert not broken, f"search results pointing nowhere:{_listing(broken)}"
    assert not report.console_errors + report.failed_requests, report
    assert not report.external_requests, report.external_requests


def test_mathjax_is_served_from_the_build(html_dir):
    """The static HTML loads MathJax from _build/html/_static, never from a CDN."""
    mathjax = html_dir / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.is_file() and mathjax.stat().st_size > 100_000, mathjax
    offenders = []
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        # What the page fetches as it loads: scripts, images and stylesheets.
        fetched = re.findall(r'<(?:script|img)\b[^>]*?\bsrc="([^"]+)"', text)
        fetched += re.findall(r'<link\b[^>]*?rel="stylesheet"[^>]*?href="([^"]+)"', text)
        for src in fetched:
            if urlsplit(src).scheme in ("http", "https", "") and src.startswith(("http", "//")):
                offenders.append(f"{page.relative_to(html_dir)}: {src}")
        if "mathjax@" in text or "cdn.jsdelivr" in text:
            offenders.append(f"{page.relative_to(html_dir)}: mentions a MathJax CDN")
        if 'class="math' in text and "_static/mathjax/tex-chtml.js" not in text:
            offenders.append(f"{page.relative_to(html_dir)}: has math but no local MathJax")
    assert not offenders, _listing(offenders)


def _public_names() -> list[str]:
    """Every public name the API page must document: softmax_grad.__all__, the public functions of
    softmax_grad.plotting and the __all__ of the submodules native, torch and jax."""
    sg = importlib.import_module("softmax_grad")
    names = [f"softmax_grad.{n}" for n in sg.__all__]
    plotting = importlib.import_module("softmax_grad.plotting")
    names += [
        f"softmax_grad.plotting.{n}"
        for n, obj in inspect.getmembers(plotting, inspect.isfunction)
        if not n.startswith("_") and obj.__module__ == plotting.__name__
    ]
    for sub in ("native", "torch", "jax"):
        module = importlib.import_module(f"softmax_grad.{sub}")
        names += [f"softmax_grad.{sub}.{n}" for n in module.__all__]
    return names


def test_api_reference_documents_every_public_name(html_dir):
    api = html_dir / "book" / "api.html"
    assert api.is_file(), "book/api.md is not in the build"
    documented = anchors_in(api)
    missing = [n for n in _public_names() if n not in documented]
    assert not missing, f"public names without an entry in the API reference:{_listing(missing)}"
