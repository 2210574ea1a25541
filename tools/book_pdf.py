"""Print the single-page HTML build of the book to one PDF with headless Chromium.

``python tools/book_pdf.py _build/singlehtml OUT.pdf --chromium /usr/bin/chromium``

The page is served on the loopback interface and opened in Chromium (driven by Playwright); after
MathJax has typeset every formula and every image has loaded, the page is rearranged for paper:

* a title page with a table of contents (chapter titles linked to their first page, with page
  numbers),
* every chapter starts on a new page, its title one heading level up (``h1``), so the PDF's outline
  (bookmarks, which Chromium generates from the headings) lists the chapters at the top level,
* links between chapters point into the document (Sphinx's single-page builder writes them as
  ``book/intro.html#target`` relative to a root that is not where the page lives), so Chromium
  turns them into internal PDF links,
* the theme's navigation, search and buttons are hidden; code wraps instead of being cut off.

The first print tells, from its outline, on which page each chapter starts; those numbers go into
the contents, that one page is printed again and pypdf puts it in place of the first (the numbers
fill space reserved for them, so nothing moves), then sets the document's metadata and opens it
with the outline.
Nothing is fetched from outside the machine: every request that would leave localhost is refused.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import logging
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from browser_tests.book_pages import CHROMIUM_ARGS  # noqa: E402  (the browser test's switches)

# Chromium's PDFs declare a trailer /Size a little short; pypdf warns about it on every read.
logging.getLogger("pypdf").setLevel(logging.ERROR)

PRINT_CSS = """
@page { size: A4; }
/* Chromium prints a box shadow as a grey raster image the width of the box (most of the PDF's
   bytes); on paper it is only noise. The themes set the admonitions', topics' and dropdowns'
   shadows with !important on class selectors, so a bare * would lose to them: :not(#id) gives
   this rule an id's specificity, which beats any number of classes. */
*:not(#book-pdf-none), *:not(#book-pdf-none)::before, *:not(#book-pdf-none)::after {
  box-shadow: none !important; text-shadow: none !important; }
.bd-header, .bd-header-announcement, .bd-sidebar-primary, .bd-sidebar-secondary,
.header-article, .prev-next-area, .bd-footer, .bd-footer-article, .bd-footer-content,
footer, .headerlink, #searchbox, .skip-link, .search-button-field, .theme-switch-button,
.sidebar-toggle, .toctree-wrapper > ul, #pst-back-to-top, .copybtn,
#jb-print-docs-body { display: none !important; }
/* sphinx-book-theme prints its own page title instead of the page's first h1; here every chapter
   keeps its own title and the book has one title page. */
.bd-main .bd-content .bd-article h1:first-of-type { display: block !important; }
.bd-container, .bd-container__inner, .bd-page-width, .bd-main, .bd-content,
.bd-article-container, .bd-article { max-width: none !important; width: auto !important;
  margin: 0 !important; padding: 0 !important; }
.book-pdf-chapter { break-before: page; }
pre, .highlight pre, .output pre { white-space: pre-wrap !important; word-break: break-all;
  overflow: visible !important; max-height: none !important; }
.cell_output, .output, div.highlight, .table-wrapper { overflow: visible !important;
  max-height: none !important; }
img { max-width: 100% !important; break-inside: avoid; }
/* The theme's containers are flex items, whose default min-width is their widest unbreakable
   content: one wide table or long line would widen the whole article, which is centred, so both
   edges of every page would be cut off. The article takes the page's width; tables wrap. */
.bd-container, .bd-container__inner, .bd-page-width, .bd-main, .bd-content,
.bd-article-container, .bd-article { min-width: 0 !important; }
.pst-scrollable-table-container { overflow: visible !important; }
table { max-width: 100% !important; }
th, td, th code, td code, td .pre { white-space: normal !important; overflow-wrap: anywhere; }
figure, .cell_output img { break-inside: avoid; }
/* The theme keeps each code block whole (div.highlight: break-inside: avoid); its cell's framed
   box must move with it, or an empty frame is left at the foot of the page before. */
div.cell_input, div.cell_output { break-inside: avoid; }
h1, h2, h3, h4 { break-after: avoid; }
.book-pdf-title { break-after: page; }
.book-pdf-title .book-pdf-name { font-size: 2.2em; font-weight: 700; margin: 8vh 0 0.4em; }
.book-pdf-title .book-pdf-author { font-size: 1.1em; margin-bottom: 2em; }
.book-pdf-title .book-pdf-contents { font-size: 1.4em; font-weight: 700; margin-bottom: 0.6em; }
.book-pdf-title ol { list-style: none; padding: 0; }
.book-pdf-title li { display: flex; gap: 0.5em; margin: 0.15em 0; }
.book-pdf-title li a { flex: 1; text-decoration: none; border-bottom: 1px dotted #999; }
.book-pdf-title li .page { min-width: 3ch; text-align: right; }
"""

# Waits for MathJax and for every image, opens collapsed outputs, and rearranges the page (see the
# module docstring). Returns the chapter titles in order.
PREPARE_JS = """
async ({title, author}) => {
  if (window.MathJax) {
    for (let i = 0; i < 600 && !(MathJax.startup && MathJax.startup.promise); i++) {
      await new Promise(r => setTimeout(r, 50));
    }
    await MathJax.startup.promise;
  }
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); })));
  // Outputs that a cell hides behind a toggle are part of the book; hidden sources stay hidden.
  document.querySelectorAll('details').forEach(d => {
    if (d.querySelector('.cell_output, .output')) d.open = true; });

  const article = document.querySelector('article.bd-article');
  // Chapters: the root page's own section, then each document Sphinx appended to it.
  const roots = [article.querySelector(':scope > section')];
  // Each chapter moves out of the root page's toctree to the top of the article, so it is not
  // nested in the introduction (the outline follows the document's structure).
  article.querySelectorAll('span[id^="document-"]').forEach(span => {
    const s = span.nextElementSibling;
    if (s && s.tagName === 'SECTION') {
      roots.push(s); s.prepend(span); article.appendChild(s);
    }
  });
  const chapters = [];
  roots.forEach((section, index) => {
    if (index > 0) {
      section.classList.add('book-pdf-chapter');
      // One level up: h2 -> h1, h3 -> h2, ... (the root page's own headings are already there).
      section.querySelectorAll('h2, h3, h4, h5, h6').forEach(h => {
        const up = document.createElement('h' + (Number(h.tagName[1]) - 1));
        for (const a of h.attributes) up.setAttribute(a.name, a.value);
        while (h.firstChild) up.appendChild(h.firstChild);
        h.replaceWith(up);
      });
    }
    const heading = section.querySelector('h1');
    const id = section.querySelector('span[id^="document-"]')?.id || section.id;
    chapters.push({id, title: heading.textContent.replace(/#$/, '').trim()});
  });

  // In-document links: any relative link whose target id is in this page points at it directly.
  document.querySelectorAll('a[href]').forEach(a => {
    const href = a.getAttribute('href');
    if (/^[a-z]+:/i.test(href) || !href.includes('#')) return;
    const id = decodeURIComponent(href.slice(href.indexOf('#') + 1));
    if (id && document.getElementById(id)) a.setAttribute('href', '#' + id);
  });

  const page = document.createElement('div');
  page.className = 'book-pdf-title';
  const add = (tag, cls, text) => {
    const e = document.createElement(tag); e.className = cls; e.textContent = text;
    page.appendChild(e); return e; };
  add('div', 'book-pdf-name', title);
  add('div', 'book-pdf-author', author);
  add('div', 'book-pdf-contents', 'Contents');
  const list = document.createElement('ol');
  chapters.forEach(c => {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = '#' + c.id; a.textContent = c.title;
    const n = document.createElement('span');
    n.className = 'page'; n.textContent = '';
    li.append(a, n); list.appendChild(li);
  });
  page.appendChild(list);
  article.prepend(page);
  return chapters.map(c => c.title);
}
"""

# Display math wider than the text (MathJax 3 does not break lines) would run past the right
# margin and be cut off on paper; each such formula gets a font size that makes it fit. Run with
# the viewport as wide as the printed text, so widths are those of the page.
FIT_MATH_JS = """
() => {
  let fitted = 0;
  document.querySelectorAll('mjx-container[display="true"]').forEach(c => {
    const math = c.querySelector(':scope > mjx-math');
    const avail = c.parentElement.clientWidth;
    const need = math ? math.getBoundingClientRect().width : 0;
    if (avail > 0 && need > avail) {
      c.style.fontSize = Math.floor(1000 * avail / need) / 10 + '%';
      fitted++;
    }
  });
  return fitted;
}
"""

SET_PAGES_JS = """
(pages) => {
  document.querySelectorAll('.book-pdf-title li .page')
    .forEach((e, i) => { e.textContent = String(pages[i]); });
}
"""

FOOTER = (
    '<div style="font-size:8px;width:100%;text-align:center;color:#555">'
    '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
)


def _serve(root: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


PRINT_PAGE = "_book-pdf.html"


def _root_page(html_dir: Path) -> str:
    """A copy, at the top of ``html_dir``, of the page the single-page build wrote the book into.

    The book's root document is ``book/intro``, so that page is ``book/intro.html``, but Sphinx's
    single-page builder writes every asset and link relative to the top folder (``_static/...``,
    ``_images/...``); at the top the page finds them.
    """
    skip = {"index.html", "search.html", "genindex.html", PRINT_PAGE}
    pages = [
        p
        for p in html_dir.rglob("*.html")
        if p.name not in skip and p.relative_to(html_dir).parts[0] not in ("_static", "_sources")
    ]
    if len(pages) != 1:
        raise SystemExit(f"expected one page in {html_dir}, found {[str(p) for p in pages]}")
    (html_dir / PRINT_PAGE).write_bytes(pages[0].read_bytes())
    return PRINT_PAGE


def chapter_pages(pdf: Path, titles: list[str]) -> list[int]:
    """1-based first page of each chapter, from the PDF's top-level outline entries."""
    reader = PdfReader(pdf)
    top = [item for item in reader.outline if not isinstance(item, list)]
    found = {}
    for item in top:
        found.setdefault(_key(item.title), reader.get_destination_page_number(item) + 1)
    missing = [t for t in titles if _key(t) not in found]
    if missing:
        raise SystemExit(
            f"chapters missing from the PDF outline: {missing}; outline has {list(found)}"
        )
    return [found[_key(t)] for t in titles]


def _key(title: str) -> str:
    # Chromium writes a heading's rendered lines into the outline, dropping the space at a break.
    return "".join(title.split())


def print_book(html_dir: Path, out: Path, chromium: str, title: str, author: str) -> int:
    from playwright.sync_api import sync_playwright

    server = _serve(html_dir)
    url = f"http://127.0.0.1:{server.server_address[1]}/{_root_page(html_dir)}"
    refused: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            context = browser.new_context()

            def route(r):
                host = urlsplit(r.request.url).hostname
                if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                    r.continue_()
                else:
                    refused.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            t0 = time.perf_counter()
            # The whole book is one page: on a busy machine (make test runs two checks at a time)
            # it takes longer to load than Playwright's default limit of 30 s.
            page.goto(url, wait_until="load", timeout=600_000)
            page.add_style_tag(content=PRINT_CSS)
            titles = page.evaluate(PREPARE_JS, {"title": title, "author": author})
            page.emulate_media(media="print")
            # A4 less the side margins below (210 - 2 * 15 mm), in CSS pixels.
            page.set_viewport_size({"width": round(180 / 25.4 * 96), "height": 1000})
            fitted = page.evaluate(FIT_MATH_JS)
            options = dict(
                format="A4",
                print_background=True,
                outline=True,
                tagged=True,
                display_header_footer=True,
                header_template="<div></div>",
                footer_template=FOOTER,
                margin={"top": "16mm", "bottom": "18mm", "left": "15mm", "right": "15mm"},
            )
            draft = out.with_suffix(".draft.pdf")
            contents = out.with_suffix(".contents.pdf")
            t1 = time.perf_counter()
            page.pdf(path=str(draft), **options)
            t2 = time.perf_counter()
            pages = chapter_pages(draft, titles)
            if pages[0] != 2:
                raise SystemExit(f"the title and contents take {pages[0] - 1} pages, not one")
            # Only the contents page changes: print it alone, with the numbers.
            page.evaluate(SET_PAGES_JS, pages)
            page.pdf(path=str(contents), page_ranges="1", **options)
            t3 = time.perf_counter()
            print(
                f"loaded and typeset in {t1 - t0:.0f} s, printed in {t2 - t1:.0f} s, "
                f"contents page with page numbers in {t3 - t2:.0f} s; {fitted} wide formulas "
                "set smaller to fit the page"
            )
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    if refused:
        raise SystemExit(f"the page tried to fetch from outside localhost: {refused}")

    # The numbered contents page replaces the first one. It keeps the first print's links (the
    # same rectangles, since the numbers sit in space reserved for them), whose destinations are
    # pages of this document.
    writer = PdfWriter(clone_from=draft)
    links = writer.pages[0].get("/Annots")
    numbered = writer.insert_page(PdfReader(contents).pages[0], 0)
    if links is not None:
        numbered[NameObject("/Annots")] = links
    del writer.pages[1]
    writer.add_metadata({"/Title": title, "/Author": author, "/Subject": "softmax-grad"})
    writer.page_mode = "/UseOutlines"
    with out.open("wb") as f:
        writer.write(f)
    draft.unlink()
    contents.unlink()
    print(f"{out}: {len(writer.pages)} pages, chapters start on pages {pages}")
    for t, n in zip(titles, pages, strict=True):
        print(f"  {n:4d}  {t}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path, help="the singlehtml build (_build/singlehtml)")
    parser.add_argument("out", type=Path, help="the PDF to write")
    parser.add_argument("--chromium", required=True, help="Chromium/Chrome executable")
    parser.add_argument(
        "--config", type=Path, default=Path("_config.yml"), help="title and author from here"
    )
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return print_book(
        args.html_dir.resolve(), args.out, args.chromium, config["title"], config["author"]
    )


if __name__ == "__main__":
    sys.exit(main())
