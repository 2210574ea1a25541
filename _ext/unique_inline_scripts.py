"""Emit each inline ``<script>`` once per page (works around a Sphinx 7.4 bug).

An extension that calls ``app.add_js_file(None, body=...)`` after the HTML builder was set up
(sphinx-thebe and sphinx-togglebutton do) gets its script twice: once as added, with filename
``None``, and again when ``prepare_writing`` re-adds the registry's files with filename ``""``; the
builder's de-duplication treats ``None`` and ``""`` as different. sphinx-thebe's duplicated
``const THEBE_JS_URL = ...`` then throws "Identifier has already been declared" on every page.
"""

from __future__ import annotations


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    unique = []
    for js in scripts:
        key = (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app):
    # Late priority: run after every other handler that may add scripts to the page.
    app.connect("html-page-context", _drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
