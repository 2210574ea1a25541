r"""Checks that print what they measured against what they allow, and fail loudly.

Every check in the book prints one line, label first, for example::

    max |error| < 1e-16 ≤ allowed 2.2e-15

and raises :class:`AssertionError` with the same line (ending in ``FAILED``) when the measured
value exceeds the allowed one, so a failing check fails the notebook's execution.

Printing precision is chosen so the line is the same on every CPU. A rounding error depends on
the summation order, which NumPy's SIMD code chooses per CPU, so by default the *measured* value
is shown only as its order of magnitude: the next power of ten above it (``< 1e-16``), or ``= 0``
when it is exactly zero. The *allowed* value is computed from the dtype and the sizes alone, so it
is shown with two significant digits. When that power of ten would exceed the allowed value, the
measured value is shown with two significant digits instead. Pass ``digits=k`` to show the
measured value with ``k`` significant digits when it is exact (a count, an exactly representable
result). A failed check always shows two significant digits, since that line is for debugging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CheckResult", "check_allclose", "check_at_most", "check_close", "format_magnitude"]


def format_magnitude(value: float) -> str:
    """``value >= 0`` as ``"= 0"`` or ``"< 1e-16"`` (the smallest power of ten above it).

    Examples
    --------
    >>> format_magnitude(3.1e-17), format_magnitude(0.0), format_magnitude(1e-16)
    ('< 1e-16', '= 0', '< 1e-15')
    """
    value = float(value)
    if value == 0:
        return "= 0"
    if not math.isfinite(value) or value < 0:
        return f"= {value:.2g}"
    # floor(log10) + 1 puts exact powers of ten in the next bucket up, so "<" is always strict.
    exponent = math.floor(math.log10(value)) + 1
    if 10.0**exponent <= value:  # log10 rounded down across a power of ten
        exponent += 1
    return f"< 1e{exponent:d}"


def _digits(value: float, digits: int) -> str:
    return f"{float(value):.{digits}g}"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a check that passed (a failed one raises instead).

    Attributes
    ----------
    label : str
        What was measured.
    measured, allowed : float
        The measured value and the largest value that passes.
    line : str
        The line that was printed.
    """

    label: str
    measured: float
    allowed: float
    line: str

    def __str__(self) -> str:
        return self.line

    def _ipython_display_(self) -> None:
        # The line was printed already; a check ending a cell adds nothing more to its output.
        return None


def check_at_most(
    label: str, measured, allowed, *, digits: int | None = 2, unit: str = ""
) -> CheckResult:
    r"""Print ``label = measured ≤ allowed allowed`` and fail unless ``measured <= allowed``.

    Parameters
    ----------
    label : str
        What is measured, printed first (e.g. ``"max |error|"``).
    measured : float
        The measured value. NaN always fails.
    allowed : float
        The largest value that passes.
    digits : int or None, default 2
        Significant digits shown for ``measured``; ``None`` shows only its order of magnitude
        (:func:`~softmax_grad.checks.format_magnitude`), which is stable across CPUs for
        rounding errors.
    unit : str, optional
        Appended to both numbers (e.g. ``" ulp"``).

    Returns
    -------
    CheckResult

    Raises
    ------
    AssertionError
        If ``measured > allowed`` or ``measured`` is NaN, with the same line ending in ``FAILED``.
    """
    measured = float(measured)
    allowed = float(allowed)
    passed = measured <= allowed  # False for NaN
    if passed:
        shown = format_magnitude(measured) if digits is None else f"= {_digits(measured, digits)}"
        if digits is None and measured > 0 and float(shown[2:]) > allowed:
            # The power of ten above the value exceeds what is allowed: "< 1e-14 ≤ 2.2e-15"
            # would mislead, so show two significant digits instead.
            shown = f"= {_digits(measured, 2)}"
        line = f"{label} {shown}{unit} ≤ allowed {_digits(allowed, 2)}{unit}"
        print(line)
        return CheckResult(label, measured, allowed, line)
    line = f"{label} = {_digits(measured, 2)}{unit} > allowed {_digits(allowed, 2)}{unit}: FAILED"
    print(line)
    raise AssertionError(line)


def check_close(label: str, measured, allowed, *, digits: int | None = None) -> CheckResult:
    """A measured error against the error allowed: :func:`check_at_most` showing its magnitude.

    ``measured`` is a non-negative error such as ``max |a - b|``; by default it is printed as its
    order of magnitude (``< 1e-16``), so the line is the same on every CPU.

    Examples
    --------
    >>> r = check_close("max |error|", 3.1e-17, 2.2e-15)
    max |error| < 1e-16 ≤ allowed 2.2e-15
    """
    return check_at_most(label, measured, allowed, digits=digits)


def check_allclose(
    label: str, actual, expected, *, rtol: float = 1e-7, atol: float = 0.0
) -> CheckResult:
    r"""Elementwise :math:`|a - e| \le \text{atol} + \text{rtol}\,|e|`, printed as magnitudes.

    Prints the largest absolute error, the largest relative error :math:`|a - e| / |e|` (over
    the nonzero :math:`e`) and the tolerances, e.g.
    ``y: max abs error < 1e-16, max rel error < 1e-15; allowed atol 0 + rtol 1e-12 · |expected|``.
    NaN must sit in the same places in both arrays (as in ``numpy.testing.assert_allclose``);
    infinities must be equal.

    Parameters
    ----------
    label : str
        What is compared, printed first.
    actual, expected : array_like, same shape
    rtol, atol : float
        Relative and absolute tolerance.

    Returns
    -------
    CheckResult
        ``measured`` is the largest ratio of error to allowed error (at most 1 when passing).

    Raises
    ------
    ValueError
        If the shapes differ.
    AssertionError
        If an element is outside the tolerance, or NaN/inf do not match, naming the worst
        element.
    """
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise ValueError(
            f"{label}: actual and expected must have the same shape, got {a.shape} and {e.shape}"
        )
    a = a.astype(np.result_type(a.dtype, np.float64), copy=False)
    e = e.astype(np.result_type(e.dtype, np.float64), copy=False)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    finite = np.isfinite(a) & np.isfinite(e)
    mismatch = (nan_a != nan_e) | (~finite & ~nan_a & ~nan_e & (a != e))
    tol_line = f"allowed atol {_digits(atol, 2)} + rtol {_digits(rtol, 2)} · |expected|"
    if np.any(mismatch):
        k = tuple(int(i) for i in np.argwhere(mismatch)[0])
        line = (
            f"{label}: non-finite values differ at index {k}: "
            f"actual {a[k]!r}, expected {e[k]!r}: FAILED"
        )
        print(line)
        raise AssertionError(line)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        err = np.where(finite, np.abs(a - e), 0.0)
        scale = np.abs(np.where(finite, e, 0.0))
        rel = np.where(scale > 0, err / scale, np.where(err > 0, np.inf, 0.0))
        ratio = np.where(err > 0, err / (atol + rtol * scale), 0.0)
    max_abs = float(err.max()) if err.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    worst = float(ratio.max()) if ratio.size else 0.0
    if worst <= 1:
        line = (
            f"{label}: max abs error {format_magnitude(max_abs)}, "
            f"max rel error {format_magnitude(max_rel)}; {tol_line}"
        )
        print(line)
        return CheckResult(label, worst, 1.0, line)
    k = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    line = (
        f"{label}: max abs error {_digits(max_abs, 2)}, max rel error {_digits(max_rel, 2)}; "
        f"{tol_line}; worst at index {k}: actual {a[k]!r}, expected {e[k]!r}: FAILED"
    )
    print(line)
    raise AssertionError(line)
