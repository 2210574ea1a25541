"""What the book's PDF (``make pdf``, tools/book_pdf.py) needs from the Sphinx build.

* Every HTML page's download menu (sphinx-book-theme's ``use_download_button``, which offers the
  page's ``.ipynb`` and source file) gains a link to the whole book as one PDF, which ``make pdf``
  writes to the root of the site as ``book_pdf_name`` (default ``softmax-grad-book.pdf``).
* The single-page HTML build, which the PDF is printed from, can render cells with hidden input:
  myst-nb registers its ``HideCodeCellNode`` for the ``html`` builder only, and because other
  extensions register visitors under the ``singlehtml`` name, Sphinx does not fall back to the
  ``html`` ones there ("unknown node type: HideCodeCellNode").
"""

from __future__ import annotations

from myst_nb.sphinx_ import HideCodeCellNode, depart_HideCellInput, visit_HideCellInput


def _add_pdf_button(app, pagename, templatename, context, doctree):
    groups = [
        b
        for b in context.get("header_buttons", [])
        if b.get("type") == "group" and b.get("label") == "download-buttons"
    ]
    if not groups:
        return
    buttons = groups[0]["buttons"]
    for b in buttons:
        if b.get("label") == "download-pdf-button":  # the theme's window.print() of one page
            b["text"] = "Print page"
    buttons.insert(
        0,
        {
            "type": "link",
            "url": context["pathto"](app.config.book_pdf_name, 1),
            "text": "Book .pdf",
            "tooltip": "Download the whole book as one PDF",
            "icon": "fas fa-book",
            "label": "download-book-pdf-button",
        },
    )


def setup(app):
    app.add_config_value("book_pdf_name", "softmax-grad-book.pdf", "html")
    # sphinx-book-theme fills header_buttons at the default priority 500.
    app.connect("html-page-context", _add_pdf_button, priority=600)
    app.registry.add_translation_handlers(
        HideCodeCellNode, singlehtml=(visit_HideCellInput, depart_HideCellInput)
    )
    return {"parallel_read_safe": True, "parallel_write_safe": True}
