"""The book as one PDF (``make pdf``): checked with poppler's pdftotext and pdfimages, tools
independent of the Chromium that printed it and of the pypdf that post-processed it.

``BOOK_PDF`` names the PDF (default ``_build/pdf/softmax-grad-book.pdf``); pdftotext and pdfimages
must be on PATH (``tools/ensure-tool poppler`` finds or installs them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PDF = Path(os.environ.get("BOOK_PDF", REPO / "_build" / "pdf" / "softmax-grad-book.pdf"))
NOTEBOOKS = sorted((REPO / "book").glob("*.ipynb"))

# What is left on the page when math was not typeset: TeX delimiters, or a TeX command.
TEX_DELIMITERS = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{")
TEX_COMMAND = re.compile(
    r"\\(?:frac|sum|partial|mathbf|mathrm|operatorname|left|right|cdot|odot)\b"
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: install poppler (Debian/Ubuntu: apt-get install poppler-utils; "
            "macOS: brew install poppler), or run tools/ensure-tool poppler",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def pdf() -> Path:
    if not PDF.is_file():
        pytest.fail(f"no PDF at {PDF}: build it with make pdf (or set BOOK_PDF)", pytrace=False)
    return PDF


@pytest.fixture(scope="module")
def text(pdf) -> str:
    return subprocess.run(
        [_tool("pdftotext"), "-enc", "UTF-8", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _titles() -> list[str]:
    """The title of every page in _toc.yml: the first heading of each notebook or Markdown file."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    entries = toc.get("chapters", []) + [
        c for part in toc.get("parts", []) for c in part["chapters"]
    ]
    files = [toc["root"]] + [c["file"] for c in entries]
    titles = []
    for f in files:
        path = next(p for p in (REPO / f"{f}.md", REPO / f"{f}.ipynb") if p.is_file())
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text())
            source = "".join(
                "".join(c["source"]) + "\n" for c in nb["cells"] if c["cell_type"] == "markdown"
            )
        else:
            source = path.read_text()
        titles.append(re.search(r"^# (.+)$", source, re.MULTILINE).group(1).strip())
    return titles


def _squash(s: str) -> str:
    return "".join(s.split())


def test_page_count(pdf):
    info = subprocess.run(
        [_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.MULTILINE).group(1))
    print(f"{pdf.name}: {pages} pages for {len(_titles())} chapters")
    # A title page, then every chapter on pages of its own: far more than one page per chapter.
    assert pages >= 2 * len(_titles()), pages


def test_every_chapter_title_is_in_the_text(text):
    flat = _squash(text)  # pdftotext breaks long titles over lines
    missing = [t for t in _titles() if _squash(t) not in flat]
    assert not missing, f"chapter titles not found by pdftotext: {missing}"


def test_contents_page_lists_every_chapter_with_its_page(text):
    first_page = text.split("\f")[0]
    assert "Contents" in first_page
    for title in _titles():
        assert _squash(title) in _squash(first_page), f"{title!r} not on the contents page"
    numbers = [int(n) for n in re.findall(r"^\s*(\d+)\s*$", first_page, re.MULTILINE)]
    assert len(numbers) >= len(_titles()) and numbers == sorted(numbers), numbers


def _code_text() -> str:
    """Every code cell's source and text output: the places where a backslash is not math."""
    parts = []
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            parts.append("".join(cell["source"]))
            for out in cell.get("outputs", []):
                parts.append("".join(out.get("text", "")))
                parts.append("".join(out.get("data", {}).get("text/plain", "")))
    for path in (REPO / "lib").rglob("*.py"):  # the API page shows signatures and defaults
        parts.append(path.read_text())
    return _letters("\n".join(parts))


def _letters(s: str) -> str:
    # Letters, digits and backslashes only: pdftotext's spacing, hyphens and minus signs in code
    # listings do not always match the source character for character.
    return re.sub(r"[^A-Za-z0-9\\]", "", s)


def test_no_raw_tex_in_the_text(text):
    code = _code_text()
    raw = []
    for line in text.splitlines():
        if TEX_DELIMITERS.search(line) or TEX_COMMAND.search(line):
            # A line of a code listing (wrapped anywhere) is a piece of some cell's text.
            if _letters(line) not in code:
                raw.append(line.strip())
    assert not raw, "raw TeX in the PDF's text (math not typeset?):\n  " + "\n  ".join(raw[:20])


def _png_size(b64: str) -> tuple[int, int]:
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _notebook_figures() -> Counter:
    """Pixel sizes (width, height) of every image/png output of the notebooks, with multiplicity."""
    return Counter(
        _png_size(out["data"]["image/png"])
        for path in NOTEBOOKS
        for cell in json.loads(path.read_text())["cells"]
        if cell["cell_type"] == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )


def _pdf_images(pdf) -> list[list[str]]:
    """The rows of ``pdfimages -list`` for the images proper (not masks): page, num, type,
    width, height, colour, ..."""
    listing = subprocess.run(
        [_tool("pdfimages"), "-list", str(pdf)], capture_output=True, text=True, check=True
    ).stdout.splitlines()[2:]
    return [cols for cols in (row.split() for row in listing) if cols[2] == "image"]


def test_every_notebook_figure_is_in_the_pdf(pdf):
    """Each image/png output of the notebooks appears in the PDF at its own pixel size (Chromium
    embeds the PNG's pixels as they are), so every figure is there, counted with multiplicity."""
    figures = _notebook_figures()
    images = Counter((int(cols[3]), int(cols[4])) for cols in _pdf_images(pdf))
    print(
        f"{sum(figures.values())} figures in the notebooks, {sum(images.values())} images "
        "in the PDF"
    )
    missing = figures - images
    assert sum(figures.values()) > 0
    assert not missing, f"figures (width x height) not found in the PDF: {dict(missing)}"


def test_no_image_but_the_figures(pdf):
    """Every image in the PDF is a notebook figure: a box shadow, filter or opacity that Chromium
    prints as a grey raster (once about 150 of them, most of the file) is not."""
    figures = _notebook_figures()
    extra = Counter(
        (int(cols[0]), int(cols[3]), int(cols[4]), cols[5])
        for cols in _pdf_images(pdf)
        if (int(cols[3]), int(cols[4])) not in figures
    )
    assert not extra, (
        f"{sum(extra.values())} images that are no figure (page, width, height, colour), "
        f"the first: {sorted(extra)[:10]}"
    )


# One word of pdftotext -bbox: its box in points, from the page's top left corner.
BBOX_PAGE = re.compile(r'<page width="([\d.]+)" height="[\d.]+">(.*?)</page>', re.S)
BBOX_WORD = re.compile(r'<word xMin="([-\d.]+)" yMin="[-\d.]+" xMax="([-\d.]+)"[^>]*>([^<]*)<')


def test_nothing_is_cut_off_at_the_page_edges(pdf, text):
    """Every word lies between the side margins, whose width is where the title begins.

    A page laid out wider than the paper (once: every page, both edges cut) or a formula wider
    than the text is clipped at the margin: the first page then does not begin with the book's
    title, or a word's box crosses a margin (pdftotext keeps a glyph that is partly inside). Words
    without a letter or digit are skipped: MathJax's stretchy-delimiter glyphs have font boxes far
    wider than what they draw."""
    assert _squash(text).startswith(_squash(_titles()[0])), text[:200]
    bbox = subprocess.run(
        [_tool("pdftotext"), "-bbox", "-enc", "UTF-8", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pages = BBOX_PAGE.findall(bbox)
    margin = float(BBOX_WORD.search(pages[0][1]).group(1))  # the title's first word
    assert margin > 0, margin
    outside = []
    for number, (width, body) in enumerate(pages, start=1):
        right = float(width) - margin
        for x_min, x_max, word in BBOX_WORD.findall(body):
            inside = margin - 1 <= float(x_min) and float(x_max) <= right + 1
            if re.search(r"[A-Za-z0-9]", word) and not inside:
                outside.append(f"page {number}: {word!r} at x = {x_min}..{x_max}")
    assert not outside, (
        f"words past the side margins ({margin:.1f} pt of {width} pt):\n  "
        + "\n  ".join(outside[:20])
    )


def test_internal_links_point_into_the_document(pdf):
    """The contents page's entries are links inside the PDF (GoTo actions or named
    destinations), not URLs back to the web page the PDF was printed from."""
    from pypdf import PdfReader

    reader = PdfReader(pdf)
    annots = [a.get_object() for a in reader.pages[0].get("/Annots", [])]
    internal = [a for a in annots if "/Dest" in a or a.get("/A", {}).get("/S") == "/GoTo"]
    external = [a["/A"]["/URI"] for a in annots if a.get("/A", {}).get("/S") == "/URI"]
    assert len(internal) >= len(_titles()), (len(internal), external[:5])
    assert not any("127.0.0.1" in u or "localhost" in u for u in external), external
    outline = [o for o in reader.outline if not isinstance(o, list)]
    assert [_squash(o.title) for o in outline] == [_squash(t) for t in _titles()]
