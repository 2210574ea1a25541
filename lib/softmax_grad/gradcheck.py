r"""Numerical gradients and the comparison of an analytic gradient against them.

For a scalar function :math:`f` of an array :math:`x` and a step :math:`h`:
forward :math:`(f(x + h e_k) - f(x))/h` (error O(h)), central
:math:`(f(x + h e_k) - f(x - h e_k))/2h` (error O(h²)), complex step
:math:`\operatorname{Im} f(x + i h e_k)/h` (error O(h²), no cancellation, so h can be tiny).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._validation import HALF_DTYPES

_METHODS = ("central", "forward", "complex")


def default_step(method: str, dtype=np.float64) -> float:
    r"""The step that balances truncation and rounding error for ``method`` in ``dtype``.

    :math:`\sqrt{\varepsilon}` for forward, :math:`\varepsilon^{1/3}` for central, and
    :math:`10^{-20}` for the complex step, which has no subtractive cancellation.
    """
    _check_method(method)
    eps = np.finfo(np.dtype(dtype)).eps
    return {"forward": float(np.sqrt(eps)), "central": float(np.cbrt(eps)), "complex": 1e-20}[
        method
    ]


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")


def numerical_gradient(
    f: Callable[[np.ndarray], float], x, eps: float | None = None, method: str = "central"
) -> np.ndarray:
    r"""Finite-difference gradient of a scalar function, one coordinate at a time.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar`` (a one-element result is accepted; anything larger is an error,
        see :func:`numerical_jacobian`). For ``method="complex"`` it must accept complex input
        and be analytic (no ``abs``, no comparisons on the perturbed values).
    x : array_like, shape (...)
        The point; float32 input is perturbed and evaluated in float32 (complex64). float16
        and bfloat16 are refused (TypeError): a difference quotient in half precision is too
        inaccurate to check anything (book chapter "When the formula meets floating point").
    eps : float, optional
        The step h; default :func:`default_step`.
    method : {"central", "forward", "complex"}

    Returns
    -------
    g : ndarray, shape of ``x``
        :math:`g_k \approx \partial f/\partial x_k`, in x's floating dtype.
    """
    _check_method(method)
    x, h = _point_and_step(x, eps, method)
    grad = np.empty(x.shape, dtype=x.dtype)
    for k, derivative in _partials(f, x, h, method):
        if np.size(derivative) != 1:
            raise ValueError(
                f"numerical_gradient needs a scalar function: f(x) returned shape "
                f"{np.shape(derivative)}; use numerical_jacobian for a vector function"
            )
        grad[k] = np.reshape(derivative, ())
    return grad


def numerical_jacobian(
    f: Callable[[np.ndarray], np.ndarray], x, eps: float | None = None, method: str = "central"
) -> np.ndarray:
    r"""Finite-difference Jacobian of a vector function, one input coordinate (column) at a time.

    Column :math:`k` is :math:`(f(x + h e_k) - f(x - h e_k)) / 2h` for ``method="central"``
    (forward and complex step as in :func:`numerical_gradient`), so ``n`` inputs cost ``2n``
    evaluations of ``f`` (``n + 1`` forward, ``n`` complex).

    Parameters
    ----------
    f : callable
        ``f(x) -> array`` of any shape; its ``m`` values are taken in C order (flattened).
    x : array_like, shape (...)
        The point; its ``n`` coordinates are taken in C order. float32 stays float32.
    eps : float, optional
        The step h; default :func:`default_step`.
    method : {"central", "forward", "complex"}

    Returns
    -------
    J : ndarray, shape (m, n)
        :math:`J_{ik} \approx \partial f_i / \partial x_k`, in x's floating dtype.

    Examples
    --------
    >>> import numpy as np, softmax_grad as sg
    >>> J = numerical_jacobian(sg.softmax, np.array([0.0, 1.0, 2.0]))
    >>> J.shape
    (3, 3)
    """
    _check_method(method)
    x, h = _point_and_step(x, eps, method)
    columns = [np.ravel(d) for _, d in _partials(f, x, h, method)]
    if not columns:
        m = np.size(f(x.copy()))
        return np.empty((m, 0), dtype=x.dtype)
    return np.stack(columns, axis=1).astype(x.dtype, copy=False)


def _point_and_step(x, eps, method: str) -> tuple[np.ndarray, float]:
    x = np.asarray(x)
    if x.dtype in HALF_DTYPES:
        # bfloat16 is not kind "f" and would silently be checked as float64.
        raise TypeError(
            f"x has dtype {x.dtype}: a difference quotient evaluated in half precision has a "
            "relative error of about eps^(2/3) (1e-2 in float16, 4e-2 in bfloat16) times "
            "|f|/|g|, too large to check a gradient with. Check the formula at "
            "x.astype(np.float64), and the half-precision result against float64 of the same "
            "inputs within its rounding bound (softmax_grad.vjp_error_bound)"
        )
    if x.dtype.kind not in "f":
        x = x.astype(np.float64)
    h = default_step(method, x.dtype) if eps is None else float(eps)
    if not (h > 0 and np.isfinite(h)):  # rejects NaN, inf, 0 and negative steps
        raise ValueError(f"eps must be a positive finite step, got {eps}")
    return x, h


def _partials(f, x: np.ndarray, h: float, method: str):
    """Yield ``(k, df/dx_k)`` for every index ``k`` of ``x`` (``df`` has the shape of ``f(x)``)."""
    if method == "complex":
        work = x.astype(np.result_type(x.dtype, np.complex64))
        for k in np.ndindex(x.shape):
            work[k] += 1j * h
            yield k, np.imag(f(work)) / h
            work[k] = x[k]
        return
    work = x.copy()
    f0 = np.asarray(f(work)) if method == "forward" else None
    for k in np.ndindex(x.shape):
        # The step actually taken is (x + h) - x, which differs from h by rounding.
        work[k] = x[k] + x.dtype.type(h)
        step = work[k] - x[k]
        if step == 0:
            raise ValueError(
                f"eps={h:g} is below the spacing of x[{', '.join(map(str, k))}]={float(x[k])!r} "
                f"in {x.dtype}: x + eps "
                "rounds to x; use a larger step or method='complex'"
            )
        fp = np.asarray(f(work))
        if method == "forward":
            derivative = (fp - f0) / step
        else:
            work[k] = x[k] - x.dtype.type(h)
            fm = np.asarray(f(work))
            derivative = (fp - fm) / (step + (x[k] - work[k]))
        work[k] = x[k]
        yield k, derivative


def relative_error(a, b, floor: float = 0.0) -> np.ndarray:
    r"""Elementwise symmetric relative error :math:`|a - b| / \max(|a|, |b|, \text{floor})`.

    Symmetric in ``a`` and ``b``; 0 where ``a == b`` (so two exact zeros, or two equal
    infinities, give 0, not NaN); an infinity against anything else gives the limit of the
    formula (1 against a finite value, 2 against the opposite infinity); NaN where either is
    NaN. Complex values are compared as complex numbers (:math:`|a - b|` is the modulus), so
    an imaginary part counts. A positive ``floor`` turns the error into an absolute one for
    entries smaller than it.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    dt = np.result_type(a, b, np.float64)  # complex stays complex
    a, b = a.astype(dt), b.astype(dt)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        diff = np.abs(a - b)
        scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
        err = diff / scale
        # inf against finite: (inf - b)/inf is NaN, its limit 1; inf against -inf: 2.
        inf_a, inf_b = np.isinf(a), np.isinf(b)
        err = np.where(inf_a ^ inf_b, 1.0, err)
        err = np.where(inf_a & inf_b & (a != b), 2.0, err)
    return np.where(a == b, 0.0, err)


@dataclass(frozen=True)
class GradientCheck:
    """The outcome of :func:`check_gradient`.

    Attributes
    ----------
    max_error : float
        Largest elementwise relative error.
    index : tuple
        Where it occurs (an index into ``x``).
    tol : float
        The tolerance the check used.
    passed : bool
        ``max_error <= tol``.
    analytic, numerical, errors : ndarray
        The two gradients and the elementwise relative errors, shape of ``x``.
    """

    max_error: float
    index: tuple
    tol: float
    passed: bool
    analytic: np.ndarray
    numerical: np.ndarray
    errors: np.ndarray

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"gradient check {verdict}: max relative error {self.max_error:.2e} at {self.index} "
            f"(analytic {self.analytic[self.index]:.6g}, "
            f"numerical {self.numerical[self.index]:.6g}, tol {self.tol:.0e})"
        )


# Default tolerances and floors of check_gradient. float64: relative 1e-6, absolute below 1e-12.
# float32 (and narrower) x is perturbed and evaluated in float32: a central difference with
# h = eps^(1/3) then carries about eps^(2/3) ~ 2.4e-5 times |f| / |g|, and f sums many rounded
# terms, so correct gradients of softmax losses measure up to ~1e-2 relative (forward: ~0.3,
# complex step: ~1e-5) once entries below 1 % of the largest |g| compare absolutely.
_TOL64 = {"central": 1e-6, "forward": 1e-6, "complex": 1e-6}
_TOL32 = {"central": 3e-2, "forward": 5e-1, "complex": 1e-4}
_FLOOR32 = {"central": 1e-2, "forward": 1e-2, "complex": 1e-6}  # times max |analytic|


def check_gradient(
    f: Callable[[np.ndarray], float],
    grad,
    x,
    eps: float | None = None,
    method: str = "central",
    tol: float | None = None,
    floor: float | None = None,
) -> GradientCheck:
    r"""Compare an analytic gradient with :func:`numerical_gradient` of ``f`` at ``x``.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar``.
    grad : callable or array_like
        ``grad(x)`` returning the analytic gradient (shape of ``x``), or that array itself.
    x : array_like
        The point.
    eps, method
        Passed to :func:`numerical_gradient`.
    tol : float, optional
        Largest relative error that passes. Default from the dtype of ``x``: :math:`10^{-6}`
        for float64; for float32 (evaluated in float32, so the numerical gradient itself is
        far less accurate) 3e-2 central, 0.5 forward (barely a check: prefer the others),
        1e-4 complex step.
    floor : float, optional
        Passed to :func:`relative_error`, so gradients that are zero up to rounding compare
        absolutely. Default :math:`10^{-12}` for float64; for float32 a fraction of the
        largest analytic entry, :math:`10^{-2}\max|g|` (central, forward) or
        :math:`10^{-6}\max|g|` (complex step).
    """
    _check_method(method)
    x = np.asarray(x)
    analytic = np.asarray(grad(x.copy()) if callable(grad) else grad)
    if analytic.shape != x.shape:
        raise ValueError(
            f"the analytic gradient must have the shape of x {x.shape}, got {analytic.shape}"
        )
    numerical = numerical_gradient(f, x, eps=eps, method=method)
    narrow = numerical.dtype.kind == "f" and numerical.dtype.itemsize <= 4
    if tol is None:
        tol = (_TOL32 if narrow else _TOL64)[method]
    if floor is None:
        scale = float(np.max(np.abs(analytic), initial=0.0))
        floor = _FLOOR32[method] * scale if narrow else 1e-12
    errors = relative_error(analytic, numerical, floor=floor)
    if errors.size == 0:
        raise ValueError("x is empty: there is no gradient to check")
    # NaN counts as the worst error, so a NaN gradient is reported where it occurs.
    index = np.unravel_index(int(np.argmax(np.where(np.isnan(errors), np.inf, errors))), x.shape)
    max_error = float(np.max(errors))
    return GradientCheck(
        max_error=max_error,
        index=tuple(int(i) for i in index),
        tol=float(tol),
        passed=bool(max_error <= tol),
        analytic=analytic,
        numerical=numerical,
        errors=errors,
    )


def error_vs_step(
    f: Callable[[np.ndarray], float], grad, x, steps, method: str = "central", floor: float = 0.0
) -> np.ndarray:
    """Max relative error of the numerical gradient against ``grad`` for each step in ``steps``.

    Returns
    -------
    errors : ndarray, shape (len(steps),)
        For plotting error against h on log-log axes.
    """
    x = np.asarray(x)
    analytic = np.asarray(grad(x.copy()) if callable(grad) else grad)
    return np.array(
        [
            float(np.max(relative_error(analytic, numerical_gradient(f, x, h, method), floor)))
            for h in np.asarray(steps, dtype=np.float64)
        ]
    )
