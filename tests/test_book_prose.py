"""No typed numbers in the book's prose: each measured or computed number comes from a cell.

Every markdown cell of book/*.ipynb and every book/*.md page is scanned by
tests/prose_numbers.py; a number with a decimal point or an exponent outside math, code and glue
fails the test unless tests/typed_numbers_allowlist.txt names it with a reason. Run it alone with
``.venv/bin/python -m pytest tests/test_book_prose.py``.
"""

from pathlib import Path

import pytest

from tests.prose_numbers import markdown_sources, read_allowlist, typed_numbers

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
ALLOWLIST = Path(__file__).with_name("typed_numbers_allowlist.txt")
PAGES = sorted([*BOOK.glob("*.ipynb"), *BOOK.glob("*.md")])


def _allowed() -> dict[str, set[str]]:
    allowed: dict[str, set[str]] = {}
    for entry in read_allowlist(ALLOWLIST):
        allowed.setdefault(entry.path, set()).add(entry.token)
    return allowed


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_typed_numbers_in_prose(page):
    rel = page.relative_to(ROOT).as_posix()
    allowed = _allowed().get(rel, set())
    if "*" in allowed:
        return
    typed = [
        f"  {where}: {hit.token!r} in: {hit.line[:120]}"
        for where, markdown in markdown_sources(page)
        for hit in typed_numbers(markdown)
        if hit.token not in allowed
    ]
    assert not typed, (
        f"{rel}: {len(typed)} typed number(s) in prose; glue them from a cell "
        f"({{glue:text}}`key:.2f`), put them in math or code, or allowlist them with a reason in "
        f"{ALLOWLIST.name}:\n" + "\n".join(typed)
    )


def test_allowlist_entries_are_used_and_have_reasons():
    for entry in read_allowlist(ALLOWLIST):
        path = ROOT / entry.path
        assert path.is_file(), f"allowlist names a missing file: {entry.path}"
        if entry.token == "*":
            continue
        tokens = {hit.token for _, md in markdown_sources(path) for hit in typed_numbers(md)}
        assert entry.token in tokens, f"stale allowlist entry: {entry.path} | {entry.token}"


# ---- the scanner itself, on synthetic markdown --------------------------------------------------

SYNTHETIC = r"""
# Results

Composed took 21.95 ms and fused 1.32 ms, a 16.6x gain; errors reach 3e-7 and 1E+4,
a step of 10^-3 or 10^{-4}, and 10⁻⁵, and .5 of a percent.

Exempt: $1.5 x$ and $$y = 2.5$$, $u \approx 1.1 \times
10^{-16}$, `np.exp(-744.6)`, {glue:text}`ch1_err:.2e`, {eq}`eq-1.2`,
{cite}`higham-2.1`, [the docs](https://example.org/v1.2/page.html), https://x.org/a1.5,
torch==2.13.0, <!-- 9.9 --> and integers 128,256 or 1000. A sentence ends in 3.

```python
x = 0.25
```

```{math}
:label: eq-bound
u = 1.1e-16
```

```{exercise} Temperature 0.5
:label: ex-1
Compute 2.5 times $T$.
```
"""


def test_scanner_finds_each_typed_number_and_only_those():
    tokens = [hit.token for hit in typed_numbers(SYNTHETIC)]
    assert tokens == [
        "21.95",
        "1.32",
        "16.6",
        "3e-7",
        "1E+4",
        "10^-3",
        "10^{-4}",
        "10⁻⁵",
        ".5",
        "0.5",  # a directive's title is prose
        "2.5",  # and so is its body
    ]


def test_scanner_reports_the_line():
    (hit,) = typed_numbers("first line\nsecond with 2.5 in it\n")
    assert hit.token == "2.5" and hit.line == "second with 2.5 in it"


def test_scanner_handles_nested_fences_in_prose_directives():
    md = "````{note}\nSee 4.5 here.\n```python\ny = 7.5\n```\nAnd 8.5.\n````\nAfter 9.5\n"
    assert [h.token for h in typed_numbers(md)] == ["4.5", "8.5", "9.5"]


def test_allowlist_needs_a_reason(tmp_path):
    bad = tmp_path / "allow.txt"
    bad.write_text("# comment\nbook/x.ipynb | 1.5 |\n")
    with pytest.raises(ValueError, match="allow.txt:2: expected 'path | token | reason'"):
        read_allowlist(bad)
    good = tmp_path / "ok.txt"
    good.write_text("book/x.ipynb | 1.5 | a version of the standard\n")
    (entry,) = read_allowlist(good)
    assert (entry.path, entry.token, entry.reason) == (
        "book/x.ipynb",
        "1.5",
        "a version of the standard",
    )
