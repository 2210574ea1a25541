"""Open one built page in Chromium and record what a reader would meet: math, images, links,
console errors, every network request, and a full-page screenshot."""

from __future__ import annotations

import functools
import html.parser
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Folders of the build that hold assets and sources, not pages.
_ASSET_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}

# These switches keep the browser (whichever tools/ensure-tool found) from contacting Google
# services by itself (updates, sync, field trials), so every request it makes comes from the page
# under test. headless=True adds --headless. tools/book_pdf.py launches it the same way.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Text that only appears on screen when math was not typeset (outside code blocks): display
# delimiters, inline \( \) and \[ \] delimiters, environments, or $...$ around a TeX command.
RAW_MATH = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")


def content_pages(html_dir: Path) -> list[str]:
    """Every HTML page of the build (relative POSIX paths), except index.html, a redirect."""
    if not (html_dir / "index.html").is_file():
        return []
    pages = []
    for p in sorted(html_dir.rglob("*.html")):
        rel = p.relative_to(html_dir)
        if rel.parts[0] in _ASSET_DIRS or rel.as_posix() == "index.html":
            continue
        pages.append(rel.as_posix())
    return pages


class _IdCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is not None and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


@functools.cache
def anchors_in(path: Path) -> frozenset[str]:
    """The fragment targets (id=..., <a name=...>) defined in a static HTML file."""
    collector = _IdCollector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(collector.ids)


def check_internal_link(html_dir: Path, url: str) -> str | None:
    """None if ``url`` (served from html_dir) names an existing file and, if it has a #fragment,
    an existing anchor in it; otherwise the reason it is broken."""
    parts = urlsplit(url)
    rel = unquote(parts.path).lstrip("/")
    target = html_dir / rel
    if rel == "" or rel.endswith("/"):
        target = target / "index.html"
    if not target.is_file():
        return f"no file {target.relative_to(html_dir)}"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in anchors_in(target):
        return f"no anchor #{fragment} in {target.relative_to(html_dir)}"
    return None


@dataclass
class PageReport:
    path: str
    has_math: bool = False
    math_elements: int = 0
    untypeset_math: list[str] = field(default_factory=list)
    math_errors: list[str] = field(default_factory=list)
    raw_math_text: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images_without_alt: list[str] = field(default_factory=list)
    internal_links: int = 0
    broken_links: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    requests: int = 0
    downloads: dict = field(default_factory=dict)
    screenshot: Path | None = None


def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.hostname in LOOPBACK_HOSTS or f"[{parts.hostname}]" in LOOPBACK_HOSTS


def open_page(browser, url: str, report: PageReport):
    """A fresh context and page that records console errors and every request, and refuses
    (and records) any request that would leave the loopback interface."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def route(r):
        if is_loopback(r.request.url):
            r.continue_()
        else:
            report.external_requests.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()

    def on_request(_request):
        report.requests += 1

    def on_response(response):
        if response.status >= 400:
            report.failed_requests.append(f"HTTP {response.status} {response.url}")

    def on_failed(request):
        if is_loopback(request.url):
            report.failed_requests.append(f"{request.failure} {request.url}")

    page.on("request", on_request)
    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.on(
        "console",
        lambda m: report.console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: report.console_errors.append(f"uncaught: {e}"))
    page.goto(url, wait_until="load")
    return context, page


# Runs in the page: waits for MathJax's first typeset pass (if the page loads MathJax), then
# reports every math element Sphinx wrote and whether MathJax replaced it.
_MATH_JS = """
async () => {
  const math = Array.from(document.querySelectorAll('.math'));
  if (math.length && window.MathJax) {
    for (let i = 0; i < 300 && !(MathJax.startup && MathJax.startup.promise); i++) {
      await new Promise(r => setTimeout(r, 50));
    }
    await MathJax.startup.promise;
  }
  return {
    count: math.length,
    mathjax: !!window.MathJax,
    untypeset: math.filter(m => !m.querySelector('mjx-container'))
                   .map(m => m.textContent.trim().slice(0, 80)),
    // TeX errors: parse errors become <merror>; undefined macros (the noundefined package) are
    // kept as red text, so look at each typeset formula's internal MathML.
    errors: (window.MathJax && MathJax.startup && MathJax.startup.document)
      ? Array.from(MathJax.startup.document.math)
          .filter(item => /<merror|mathcolor="red"/.test(MathJax.startup.toMML(item.root)))
          .map(item => item.math.slice(0, 120))
      : [],
  };
}
"""

# The text a reader sees, without code (which may legitimately show $ or backslashes) and
# without typeset math.
_VISIBLE_TEXT_JS = """
() => {
  const root = (document.querySelector('main') || document.body).cloneNode(true);
  root.querySelectorAll('pre, code, .highlight, script, style, textarea, mjx-container')
      .forEach(e => e.remove());
  return root.innerText || root.textContent;
}
"""

_IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); })));
  // The page's own content: the theme's article (launch-button logos and other theme images sit
  // in <main> but outside it).
  const content = document.querySelector('article.bd-article')
                  || document.querySelector('main') || document.body;
  return imgs.map(i => ({
    src: i.getAttribute('src'), url: i.currentSrc || i.src,
    width: i.naturalWidth, height: i.naturalHeight,
    alt: i.getAttribute('alt'), in_content: content.contains(i),
  }));
}
"""

_LINKS_JS = """
() => Array.from(document.querySelectorAll('a[href]'))
  .map(a => ({href: a.getAttribute('href'), url: a.href}))
"""


# An alt text that is only a reference to an image file, as myst-nb writes when a cell sets no
# alt (docutils falls back to the image's URI, e.g. "../_images/3f2a….png"): no spaces, ends in
# an image extension. Screen readers would read the path aloud.
_IMAGE_PATH = re.compile(r"\S*\.(?:png|jpe?g|gif|svg|webp|pdf)", re.IGNORECASE)


def alt_problem(img: dict) -> str | None:
    """None if the image's alt text describes it; otherwise what is wrong with the alt text.

    Missing or empty alt, alt equal to the ``src`` attribute, to the file name, or to any path
    of an image file (``_images/….png``) do not describe anything. A figure caption does not
    stand in for alt text: assistive technology reads the alt attribute of the image itself.
    """
    raw = img["alt"]
    if raw is None:
        return "no alt attribute"
    alt = raw.strip()
    if not alt:
        return 'empty alt=""'
    src = img["src"] or ""
    name = Path(urlsplit(src).path).name
    if alt == src:
        return "alt is the image's file path"
    if Path(urlsplit(alt).path).name == name or _IMAGE_PATH.fullmatch(alt):
        return f"alt is a file path: {alt!r}"
    return None


# The download menu's links (sphinx-book-theme, plus _ext/book_pdf.py's whole-book PDF), each
# fetched as the browser would: status, size and first bytes.
_DOWNLOADS_JS = """
async () => {
  const out = {};
  for (const [key, sel] of [['book_pdf', '.btn-download-book-pdf-button'],
                            ['source', '.btn-download-source-button']]) {
    const a = document.querySelector(sel);
    if (!a) continue;
    const r = await fetch(a.href);
    const bytes = new Uint8Array(await r.arrayBuffer());
    out[key] = {href: a.getAttribute('href'), status: r.status, size: bytes.length,
                head: new TextDecoder().decode(bytes.slice(0, 200))};
  }
  return out;
}
"""


def check_links(report: PageReport, links: list[dict], base_url: str, html_dir: Path) -> None:
    origin = urlsplit(base_url).netloc
    for link in links:
        parts = urlsplit(link["url"])
        if parts.scheme not in ("http", "https") or parts.netloc != origin:
            continue  # external links are not followed; only requests are policed
        if link["href"] == "#":
            continue  # "#" alone is a script-handled toggle, not a navigation target
        report.internal_links += 1
        problem = check_internal_link(html_dir, link["url"])
        if problem:
            report.broken_links.append(f"{link['href']}: {problem}")


def read_page(browser, base_url: str, html_dir: Path, page_path: str, shots: Path) -> PageReport:
    report = PageReport(path=page_path)
    context, page = open_page(browser, f"{base_url}/{page_path}", report)
    try:
        math = page.evaluate(_MATH_JS)
        report.math_elements = math["count"]
        report.has_math = math["count"] > 0
        report.untypeset_math = math["untypeset"]
        report.math_errors = math["errors"]
        if report.has_math and not math["mathjax"]:
            report.untypeset_math.append("page has math but MathJax did not load")
        text = page.evaluate(_VISIBLE_TEXT_JS)
        report.raw_math_text = sorted({m.group(0) for m in RAW_MATH.finditer(text)})

        report.images = page.evaluate(_IMAGES_JS)
        for img in report.images:
            if img["width"] == 0 or img["height"] == 0:
                report.broken_images.append(img["src"])
            # Content images only: theme images (logos, icons) sit outside the article.
            problem = alt_problem(img) if img["in_content"] else None
            if problem:
                report.images_without_alt.append(f"{img['src']}: {problem}")

        check_links(report, page.evaluate(_LINKS_JS), base_url, html_dir)
        report.downloads = page.evaluate(_DOWNLOADS_JS)

        report.screenshot = shots / Path(page_path).with_suffix(".png")
        report.screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(report.screenshot), full_page=True)
    finally:
        context.close()
    return report
