"""Exact arithmetic on floating-point data for the rounding-error tests, in Python integers.

Every finite float is an integer multiple of a power of two, so a row of floats is a row of
integers ``m_i`` over one power of two ``2**e`` (the largest denominator in the row). Sums and
products of such rows are exact integer operations: the same exact values as
:class:`fractions.Fraction`, without a gcd after every operation, which makes rows of 2^16
entries quick. An error is rounded to float64 once, at the end (``int / int`` rounds correctly).
"""

from __future__ import annotations

import numpy as np


def _scaled(values) -> tuple[list[int], int]:
    """Integers m_i and one exponent e with values_i = m_i / 2**e exactly (values: floats)."""
    ratios = [v.as_integer_ratio() for v in np.asarray(values, np.float64).tolist()]
    e = max(q.bit_length() - 1 for _, q in ratios)  # each q is a power of two
    return [p << (e - q.bit_length() + 1) for p, q in ratios], e


def exact_vjp(y, dy) -> list[tuple[list[int], int]]:
    """dx_i = y_i (dy_i - <y, dy>) row by row (y, dy: (B, n)), exactly from the floating inputs:
    for each row the numerators of dx and the exponent e of their common denominator 2**e."""
    rows = []
    for yr, dr in zip(y, dy, strict=True):
        iy, ey = _scaled(yr)
        idy, ed = _scaled(dr)
        dot = sum(a * b for a, b in zip(iy, idy, strict=True))  # <y, dy> * 2**(ey + ed)
        rows.append(([a * ((b << ey) - dot) for a, b in zip(iy, idy, strict=True)], 2 * ey + ed))
    return rows


def exact_error(computed, exact) -> np.ndarray:
    """|computed - exact| elementwise ((B, n) floats against :func:`exact_vjp`'s rows), the
    difference taken exactly, then rounded once to float64."""
    out = []
    for cr, (num, e) in zip(computed, exact, strict=True):
        ic, ec = _scaled(cr)
        s = max(e, ec)
        out.append(
            [abs((c << (s - ec)) - (x << (s - e))) / (1 << s) for c, x in zip(ic, num, strict=True)]
        )
    return np.array(out)
