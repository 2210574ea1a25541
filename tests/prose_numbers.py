"""Find numbers typed into the book's prose (the rule: every number in prose comes from a cell).

A *typed number* is a number with a decimal point (``1.32``), an exponent (``3e-7``, ``1E+4``) or
a power of ten (``10^-3``, ``10^{-3}``, ``10⁻³``) in the prose of a markdown cell or page. Integers
are not typed numbers (sizes, counts and indices are fixed by the text itself). These parts are not
prose and are skipped:

- math: ``$...$``, ``$$...$$`` and ``{math}`` blocks (a formula's constants are exact);
- code: fenced blocks other than prose directives, inline code, and every role's content, so
  ``{glue:text}`key:.2f```, ``{eq}`...``` and ``{cite}`...``` are exempt;
- link targets, bare URLs, HTML comments and directive options (``:width: 80%``);
- version strings with two or more dots (``2.13.0``).

Fenced blocks whose info string is a prose directive (``{exercise}``, ``{solution-start}``,
``{note}``, ``{dropdown}``, ``{admonition}``, ...) are scanned like prose.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# Directives whose body is prose; every other fenced block is code, math or configuration.
PROSE_DIRECTIVES = {
    "admonition",
    "attention",
    "caution",
    "danger",
    "dropdown",
    "epigraph",
    "error",
    "exercise",
    "figure",
    "hint",
    "important",
    "margin",
    "note",
    "seealso",
    "sidebar",
    "solution",
    "solution-start",
    "tip",
    "topic",
    "warning",
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>[^\n]*)$")
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.DOTALL)
_ROLE_OR_CODE = re.compile(r"(?:\{[\w:.-]+\})?(`+)(?:(?!\1).)+?\1", re.DOTALL)
# Inline math may wrap onto the next line of its paragraph, but never across a blank line.
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?:\\.|[^$\\\n]|\n(?![ \t]*\n))+?\$")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_URL = re.compile(r"<?https?://[^\s>)]+>?")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_OPTION = re.compile(r"^[ \t]*:[\w-]+:.*$", re.MULTILINE)
_VERSION = re.compile(r"\d+(?:\.\d+){2,}")
_SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹"
NUMBER = re.compile(
    r"(?<![\w.])(?:"
    r"\d*\.\d+(?:[eE][-+−]?\d+)?"  # 1.32, .5, 2.5e-3
    r"|\d+[eE][-+−]?\d+"  # 3e-7, 1E4
    r"|10\^\{?[-+−]?\d+\}?"  # 10^-3, 10^{-3}
    rf"|10[⁻⁺]?[{_SUPERSCRIPT}]+"  # 10⁻³
    r")(?!\d)(?!\.\d)"
)


@dataclass(frozen=True)
class TypedNumber:
    """A number found in prose: the token as written and the line it is on."""

    token: str
    line: str


def _prose(markdown: str) -> str:
    """The markdown with every non-prose part replaced by spaces (line breaks kept)."""
    out: list[str] = []
    lines = markdown.split("\n")
    stack: list[tuple[str, bool]] = []  # open fences: (fence, is prose)
    for line in lines:
        m = _FENCE.match(line)
        if m:
            fence, info = m.group("fence"), m.group("info").strip()
            if (
                stack
                and fence[0] == stack[-1][0][0]
                and len(fence) >= len(stack[-1][0])
                and not info
            ):
                stack.pop()
                out.append("")
                continue
            if not stack or stack[-1][1]:
                name = info[1 : info.index("}")] if info.startswith("{") and "}" in info else ""
                stack.append((fence, name in PROSE_DIRECTIVES))
                # A directive's argument (its title) is prose too.
                out.append(info[info.index("}") + 1 :] if stack[-1][1] else "")
                continue
        out.append(line if all(prose for _, prose in stack) else "")
    text = "\n".join(out)
    for pattern in (_COMMENT, _DISPLAY_MATH, _ROLE_OR_CODE, _INLINE_MATH, _LINK_TARGET, _URL):
        text = pattern.sub(_blank, text)
    text = _OPTION.sub("", text)
    return _VERSION.sub(_blank, text)


def _blank(match: re.Match) -> str:
    """The match as spaces, keeping its line breaks (so line numbers stay right)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def typed_numbers(markdown: str) -> list[TypedNumber]:
    """Every typed number in the prose of ``markdown``, in order."""
    prose = _prose(markdown)
    original = markdown.split("\n")
    found = []
    for k, line in enumerate(prose.split("\n")):
        for m in NUMBER.finditer(line):
            found.append(TypedNumber(m.group(0), original[k].strip()))
    return found


def markdown_sources(path: Path) -> list[tuple[str, str]]:
    """``(where, markdown)`` for each markdown cell of a notebook, or the whole of a .md page."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        return [
            (f"cell [{i}]", "".join(cell["source"]))
            for i, cell in enumerate(nb["cells"])
            if cell["cell_type"] == "markdown"
        ]
    return [("page", path.read_text(encoding="utf-8"))]


@dataclass(frozen=True)
class AllowEntry:
    """One allowlist line: ``path | token | reason`` (token ``*``: the whole file)."""

    path: str
    token: str
    reason: str


def read_allowlist(path: Path) -> list[AllowEntry]:
    """Parse the allowlist; every entry needs a reason (``ValueError`` naming the line if not)."""
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or not all(parts):
            raise ValueError(
                f"{path.name}:{number}: expected 'path | token | reason' with a reason, got {raw!r}"
            )
        entries.append(AllowEntry(*parts))
    return entries
