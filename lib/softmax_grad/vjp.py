r"""The loss-independent backward pass of softmax and log-softmax: vector-Jacobian products.

For :math:`y = \mathrm{softmax}(x)` and an upstream gradient :math:`dy = \partial L/\partial y`,
:math:`dx = J^\top dy = y \odot (dy - \langle y, dy\rangle)`: O(n) per row, no n-by-n matrix.

:func:`softmax_vjp` evaluates that product by the plain formula, or with ``accurate=True`` in a
form that stays accurate when one probability dominates (see its docstring);
:func:`vjp_error_bound` bounds the rounding error of each form.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from ._validation import (
    HALF_DTYPES,
    as_mask,
    as_working,
    normalize_axis,
    returned,
    same_shape,
    unit_roundoff,
)


def _pair(a, b, name_a: str, name_b: str, axis: int):
    """Validated ``a``, ``b`` (half precision as float32), the axis, the dtype to return (or
    None) and the unit roundoff of ``a`` as given (what its sum to 1 is tested against)."""
    (wa, wb), back = as_working([a, b], [name_a, name_b])
    same_shape(wa, wb, name_a, name_b)
    given = np.asarray(a).dtype  # a is validated: not a masked array
    u = unit_roundoff(given if given in HALF_DTYPES else wa.real.dtype)
    return wa, wb, normalize_axis(axis, wa.ndim), back, u


# The reference value a = dy_c is used only for rows that are probability vectors up to
# rounding: |1 - sum(y)| <= (n + _SUM_SLACK) u. A softmax output computed in the working
# precision is within a few u of 1 (measured: at most 8u for n from 1 to 2**16); other rows
# (any y, not a softmax output) keep the plain formula, which is what they ask for.
_SUM_SLACK = 16


def _dominant_shift(y: np.ndarray, dy: np.ndarray, ax: int, u: float) -> np.ndarray | None:
    r"""Per row, :math:`a = dy_c` where :math:`c` is the first argmax of ``y``,
    :math:`y_c \ge 1/2` and :math:`|1 - \sum_j y_j| \le (n + 16)u` (``u`` that of ``y``'s
    dtype as given: float16 probabilities sum to 1 only within float16's rounding); else 0.

    Kept as an axis of length 1, dtype of ``dy``; ``None`` when no row has such a ``c`` (the
    common case of uncertain predictions costs one pass over ``y``). The comparisons use the
    real part, so complex-step inputs choose the same ``c`` as real ones.
    """
    n = y.shape[ax]
    if n == 0:
        return None
    yr = y.real
    dominant = np.max(yr, axis=ax, keepdims=True) >= 0.5
    if not dominant.any():
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        dominant &= np.abs(1 - np.sum(yr, axis=ax, keepdims=True)) <= (n + _SUM_SLACK) * u
    dyc = np.take_along_axis(dy, np.argmax(yr, axis=ax, keepdims=True), axis=ax)
    return np.where(dominant, dyc, np.zeros_like(dyc))


def softmax_vjp(y, dy, axis: int = -1, where=None, accurate: bool = False) -> np.ndarray:
    r"""Backward of softmax: :math:`dx = y \odot (dy - \sum_j y_j\,dy_j)` along ``axis``.

    **Default: the plain formula.** ``accurate=False`` (the default) computes
    :math:`dx_i = y_i\,(dy_i - \langle y, dy\rangle)` on every row: the dot product, then
    subtract, then multiply, what most implementations do. It is the default because the
    accurate form below costs more than the 5 % that issue 12 allowed a default to cost at
    shapes of at least 64 x 1000 (the ratios, with the command that measures them, are in
    bench/README.md, "Design measurements"). Its rounding error is bounded by
    ``vjp_error_bound(..., algorithm="plain")``; at a dominant entry it is about
    :math:`u/(1 - y_c)` relative, so it loses every digit of :math:`dx_c` once :math:`y_c`
    rounds to 1.

    **accurate=True.** A row whose probabilities are dominated by one entry is computed as
    :math:`dx_i = y_i\,\bigl((dy_i - a) + \xi\bigr)` with :math:`a = dy_c` and
    :math:`\xi = \sum_j y_j\,(a - dy_j)`; every other row by the plain formula. Since
    :math:`\sum_j y_j = 1` the two are the same product (any constant :math:`a` cancels), but
    the first avoids a cancellation: when :math:`y_c \to 1` the plain form subtracts two nearly
    equal numbers at the dominant entry, :math:`dy_c - \langle y, dy\rangle`. There the entry
    is :math:`y_c \sum_{j \ne c} y_j (dy_c - dy_j)`, a sum of small terms, so every entry has a
    relative error of a small multiple of :math:`n u` measured from the logits, at any logit
    gap, including gaps where :math:`y_c` rounds to 1. Its rounding error is bounded by
    ``vjp_error_bound(..., algorithm="vjp")``. Use it where the gradient of a confident
    prediction matters (late in training with cross-entropy, distillation, gradient checks at
    confident points).

    **The rule** (``accurate=True``). A row takes the accurate form if and only if, with
    :math:`c` the first index of its largest :math:`y_c` and :math:`u` the unit roundoff of
    ``y``'s dtype as given,

    1. :math:`y_c \ge 1/2` (then the other entries stay within the plain formula's bound),
    2. :math:`|1 - \sum_j y_j| \le (n + 16)\,u` (the row is a probability vector up to
       rounding; off the simplex the two forms differ by :math:`y_i\,a\,(\sum_j y_j - 1)`),
    3. :math:`\langle y, dy\rangle` is finite, and
    4. :math:`\xi` is finite.

    Every other row is the plain formula bit for bit (the dot product, then subtract, then
    multiply), so a NaN anywhere in a row of ``y`` or ``dy`` makes that row NaN, and infinities
    and overflowing dot products give the plain formula's NaN and infinities.
    :func:`softmax_grad.native.softmax_vjp` takes the same keyword, with the same default and
    the same rule.

    Parameters
    ----------
    y : array_like, shape (..., n, ...)
        The softmax output of the forward pass. float16 and bfloat16 (``ml_dtypes``) inputs
        are computed in float32 and the result rounded once to their dtype (when ``y`` and
        ``dy`` share it; otherwise they promote as float32 would).
    dy : array_like, same shape as ``y``
        Gradient of any loss with respect to ``y``.
    axis : int, default -1
        The softmax axis.
    where : array_like of bool, optional
        The mask of the forward pass (:func:`softmax_grad.softmax`), broadcasting against
        ``y``; True keeps an entry. Masked entries of ``y`` and ``dy`` are not read and get
        gradient 0; the kept ones get the VJP of the softmax over the kept entries. A row with
        nothing kept is all zeros.
    accurate : bool, default False
        False: the plain formula :math:`y \odot (dy - \langle y, dy\rangle)` on every row (it
        loses the dominant entry's digits). True: the accurate form on the rows the rule picks
        (see above), at a measured cost (bench/README.md, "Design measurements").

    Returns
    -------
    dx : ndarray, same shape as ``y``
        Gradient of the loss with respect to the logits, equal to :math:`J^\top dy` with
        :math:`J = \operatorname{diag}(y) - y y^\top` (symmetric), computed in O(n).

    Raises
    ------
    TypeError
        If ``where`` is not boolean, or ``accurate`` is not a bool.
    ValueError
        If the shapes differ (both are shown), ``where`` does not broadcast to them, or
        ``axis`` is out of range.
    """
    if not isinstance(accurate, (bool, np.bool_)):
        raise TypeError(f"accurate must be True or False, got {accurate!r}")
    y, dy, ax, back, u = _pair(y, dy, "y", "dy", axis)
    mask = as_mask(where, y.shape)
    if mask is None:
        return returned(_softmax_vjp(y, dy, ax, u, accurate), back)
    # Masked entries are replaced, not read: NaN or inf there changes nothing.
    dx = _softmax_vjp(np.where(mask, y, 0), np.where(mask, dy, 0), ax, u, accurate)
    dx[~mask] = 0
    return returned(dx, back)


def _softmax_vjp(y: np.ndarray, dy: np.ndarray, ax: int, u: float, accurate: bool) -> np.ndarray:
    # The plain formula's dot product over the whole array, so a row that keeps the plain
    # formula gets the same bits whichever other rows take the accurate form. The plain
    # formula warns as NumPy does (inf - inf, overflow); the accurate form's intermediates do not.
    dot = np.sum(y * dy, axis=ax, keepdims=True)
    a = _dominant_shift(y, dy, ax, u) if accurate else None
    if a is None:
        return y * (dy - dot)
    with np.errstate(invalid="ignore", over="ignore"):
        # d = dy - a, xi = sum_j y_j (a - dy_j) = -<y, d> (negation is exact), then
        # y * (d + xi), in place in one buffer
        dx = np.subtract(dy, a, dtype=np.result_type(y, dy))
        xi = -np.sum(y * dx, axis=ax, keepdims=True)
        dx += xi
        dx *= y
    # The rule: the accurate form iff the row has a dominant entry and <y, dy> and xi are
    # finite. Rows with a = 0 (no dominant entry, or dy_c = 0, where both forms are the same
    # product) are recomputed too, so their bits never depend on the sum of y * d.
    plain = (a == 0) | ~(np.isfinite(dot) & np.isfinite(xi))
    if plain.any():  # y * (dy - dot) on those rows only (ufunc where=: the others untouched)
        np.subtract(dy, dot, out=dx, where=plain)
        np.multiply(y, dx, out=dx, where=plain)
    return dx


def log_softmax_vjp(logp, dy, axis: int = -1, where=None) -> np.ndarray:
    r"""Backward of log-softmax: :math:`dx = dy - e^{\log p}\sum_j dy_j` along ``axis``.

    Parameters
    ----------
    logp : array_like, shape (..., n, ...)
        The log-softmax output of the forward pass; half precision as in :func:`softmax_vjp`.
    dy : array_like, same shape as ``logp``
        Gradient of any loss with respect to ``logp``.
    axis : int, default -1
        The softmax axis.
    where : array_like of bool, optional
        The mask of the forward pass (:func:`softmax_grad.log_softmax`); masked entries of
        ``logp`` and ``dy`` are not read and get gradient 0, the sum runs over the kept
        entries, and a row with nothing kept is all zeros.

    Returns
    -------
    dx : ndarray, same shape as ``logp``
        The Jacobian of log-softmax is :math:`I - \mathbf{1} p^\top`, so
        :math:`dx = dy - p \sum_j dy_j`.

    Raises
    ------
    TypeError
        If ``where`` is not boolean.
    ValueError
        If the shapes differ, ``where`` does not broadcast to them, or ``axis`` is out of range.
    """
    logp, dy, ax, back, _ = _pair(logp, dy, "logp", "dy", axis)
    mask = as_mask(where, logp.shape)
    if mask is None:
        return returned(dy - np.exp(logp) * np.sum(dy, axis=ax, keepdims=True), back)
    logp, dy = np.where(mask, logp, -np.inf), np.where(mask, dy, 0)
    dx = dy - np.exp(logp) * np.sum(dy, axis=ax, keepdims=True)
    dx[~mask] = 0
    return returned(dx, back)


_BOUND_ALGORITHMS = ("vjp", "plain", "quadratic")


def _one_minus_sum(y64: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``1 - sum(y)`` along the last axis for the ``rows`` asked, correctly rounded (fsum)."""
    flat = y64.reshape(-1, y64.shape[-1])
    out = np.zeros(flat.shape[0])
    for r in np.flatnonzero(rows):
        row = flat[r]
        out[r] = math.fsum([1.0, *(-row).tolist()]) if np.all(np.isfinite(row)) else np.nan
    return out.reshape(y64.shape[:-1])


def vjp_error_bound(
    y, dy, dtype=None, axis: int = -1, algorithm: str = "vjp", depth: int | None = None
) -> np.ndarray:
    r"""Rigorous elementwise bound on the rounding error of a softmax VJP computed in ``dtype``.

    The bound is against the exact plain product :math:`dx_i = y_i\,(dy_i - \langle y, dy\rangle)`
    of the given ``y`` and ``dy``. The model {Higham, *Accuracy and Stability of Numerical
    Algorithms*, §2.2, §3.1}: every operation returns :math:`(x \mathbin{op} y)(1 + \delta)`
    with :math:`|\delta| \le u` (:math:`2^{-24}` float32, :math:`2^{-53}` float64), plus at most
    :math:`\omega/2` in a product that underflows (:math:`\omega` the smallest subnormal; additions
    of subnormals are exact); :math:`\gamma_k = ku/(1 - ku)`, and products of :math:`k` factors
    :math:`(1+\delta)^{\pm 1}` are :math:`1 + \theta_k` with :math:`|\theta_k| \le \gamma_k`.
    ``depth`` :math:`k` is the largest number of additions any one term passes through in the
    row's summation; ``None`` means :math:`k = n`, valid for any order (recursive, pairwise,
    blocked, SIMD lanes, with or without FMA, which only removes roundings).

    ``algorithm="vjp"`` (the default) bounds the accurate form,
    ``softmax_vjp(..., accurate=True)`` (and ``native.softmax_vjp(..., accurate=True)``); the
    default ``softmax_vjp(y, dy)`` is the plain formula, bounded by ``algorithm="plain"``. With
    :math:`a` its reference value (:math:`dy_c` or 0), :math:`\xi = \sum_j y_j (a - dy_j)` and
    :math:`S' = \sum_j |y_j (dy_j - a)|`, it computes :math:`\hat d_j = fl(dy_j - a)`,
    :math:`\hat\xi` minus the sum of :math:`fl(y_j \hat d_j)` (the negation is exact), and
    :math:`\widehat{dx}_i = fl(y_i\,fl(\hat d_i + \hat\xi))`. Each term of :math:`\hat\xi`
    carries the subtraction, the product and :math:`k` additions, so
    :math:`|\hat\xi - \xi| \le \gamma_{k+2} S' + n\omega(1+\gamma_k)/2`; then
    :math:`\widehat{dx}_i = y_i\bigl((dy_i - a)(1+\delta_1) + \hat\xi\bigr)(1+\delta_2)
    (1+\delta_3)`, and :math:`u(1+\gamma_2) \le \gamma_3`,
    :math:`\gamma_{k+2}(1+\gamma_2) \le \gamma_{k+4}` give

    .. math::

        |\widehat{dx}_i - y_i(dy_i - a + \xi)| \le |y_i|\bigl(\gamma_{k+4} S'
        + \gamma_3 |dy_i - a| + \gamma_2 |dy_i - a + \xi|\bigr) + c_i\,\omega,
        \qquad c_i = n|y_i|(1 + \gamma_{k+4}) + 1.

    Where :math:`a = 0`, :math:`dy_j - a` is exact: the bound is the ``"plain"`` one below
    (:math:`\gamma_{k+3} S` and no :math:`\gamma_3` term). Against the plain product the form
    differs by :math:`y_i\,a\,(\sum_j y_j - 1)`, so the bound adds
    :math:`|y_i\,a\,(1 - \sum_j y_j)|`, with :math:`1 - \sum_j y_j` correctly rounded by
    ``math.fsum``. With :math:`\sum_j y_j = 1` and :math:`y_c \ge 1/2`,
    :math:`S' = \sum_{j\ne c} y_j|dy_c - dy_j| \le (1 - y_c)|dy_c| + \sum_{j \ne c}|y_j dy_j|
    \le S`, so the bound is at most the plain one up to one :math:`u` per term and the
    :math:`\gamma_3` term; at the dominant entry it is small where the plain one is not.

    ``algorithm="plain"`` bounds :math:`\widehat{dx}_i = fl(y_i\,fl(dy_i - \hat d))` with
    :math:`\hat d` the dot product (each term one product and :math:`k` additions):
    :math:`|y_i|(\gamma_{k+3}\,S + \gamma_2\,|dy_i - \langle y, dy\rangle|) + c_i\omega` with
    :math:`S = \sum_j |y_j\,dy_j|` and :math:`c_i = n|y_i|(1+\gamma_{k+3}) + 1`.

    ``algorithm="quadratic"`` bounds the O(n²) form
    :math:`dx_i = \sum_j (-y_i y_j)\,dy_j + y_i\,dy_i` (two roundings per term in a sum of
    depth :math:`k`, the diagonal term and the final addition):
    :math:`\gamma_{k+3}\,|y_i|\,(S + |dy_i|) + (n + 4)\,\omega`.

    The bound is evaluated in float64 from the given ``y`` and ``dy`` (the exact inputs of the
    computation) and enlarged by a relative :math:`10^{-6}`, which covers that evaluation's own
    rounding. It assumes no overflow. Compare the computed result with a float64 reference of
    the same inputs (whose error, bounded by this function with ``dtype=float64``, is
    negligible for float32).

    Parameters
    ----------
    y, dy : array_like, same shape (..., n, ...)
        The inputs of the VJP.
    dtype : dtype, optional
        The arithmetic's dtype; default float32 when both inputs are float32 (or float16 /
        bfloat16), else float64. A half dtype (given, or both inputs' when ``dtype`` is None)
        means float32 arithmetic and one final rounding to it, which adds
        :math:`u_h(|dx_i| + \text{bound}_i) + \omega_h/2` (:math:`u_h`, :math:`\omega_h` of the
        half dtype).
    axis : int, default -1
        The softmax axis.
    algorithm : {"vjp", "plain", "quadratic"}
        :func:`softmax_vjp`'s accurate form (``accurate=True``), the plain O(n) formula (its
        default), or the O(n²) one.
    depth : int, optional
        Additions any one term passes through in the row's sum (e.g.
        ``softmax_grad.native.summation_depth(n, dtype)`` for the native kernels); default ``n``.

    Returns
    -------
    bound : ndarray, float64, shape of ``y``
        NaN or inf where the inputs' row is not finite (no bound applies there).

    Raises
    ------
    ValueError
        If the shapes differ, ``axis`` is out of range, ``algorithm`` is unknown, ``dtype``
        is not a floating dtype, or ``depth`` is negative.
    TypeError
        If ``depth`` is not an int.
    """
    y, dy, ax, back, u_in = _pair(y, dy, "y", "dy", axis)
    if algorithm not in _BOUND_ALGORITHMS:
        allowed = ", ".join(_BOUND_ALGORITHMS)
        raise ValueError(f"unknown algorithm={algorithm!r}; allowed: {allowed}")
    # dt: the arithmetic's dtype; rounded: the half dtype the result is rounded to at the end.
    rounded = back if dtype is None else None
    dt = np.result_type(y, dy, np.float32) if dtype is None else np.dtype(dtype)
    if dt in HALF_DTYPES:
        dt, rounded = np.dtype(np.float32), dt
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating dtype, got {dt}")
    n = y.shape[ax]
    if depth is None:
        k = n
    elif isinstance(depth, bool) or not isinstance(depth, (int, np.integer)):
        raise TypeError(f"depth must be an int (additions per term), got {type(depth).__name__}")
    elif depth < 0:
        raise ValueError(f"depth must be >= 0 (additions per term), got {depth}")
    else:
        k = int(depth)
    u = unit_roundoff(dt)
    omega = float(np.finfo(dt).smallest_subnormal)

    def gamma(m: int) -> float:
        return m * u / (1 - m * u)

    # Move the softmax axis last: one layout for the row loops below.
    y64 = np.moveaxis(y.astype(np.float64), ax, -1)
    dy64 = np.moveaxis(dy.astype(np.float64), ax, -1)
    ay = np.abs(y64)

    def model(g_sum: float, sum_abs, rest):
        """|y_i| (g_sum * sum_abs + rest) + c_i omega, c_i = n |y_i| (1 + g_sum) + 1."""
        return ay * (g_sum * sum_abs + rest) + (n * ay * (1 + g_sum) + 1) * omega

    with np.errstate(invalid="ignore", over="ignore"):
        s_abs = np.sum(np.abs(y64 * dy64), axis=-1, keepdims=True)
        dot = np.sum(y64 * dy64, axis=-1, keepdims=True)
        magnitude = ay * np.abs(dy64 - dot)  # |dx_i| of the exact plain product
        if algorithm == "quadratic":
            bound = gamma(k + 3) * ay * (s_abs + np.abs(dy64)) + (n + 4) * omega
        else:
            bound = model(gamma(k + 3), s_abs, gamma(2) * np.abs(dy64 - dot))
        if algorithm == "vjp":
            # The rows softmax_vjp shifts, decided on the inputs as it sees them (same bits).
            a = _dominant_shift(y, dy, ax, u_in)
            shifted = None if a is None else np.moveaxis(a, ax, -1)[..., 0] != 0
            if shifted is not None and np.any(shifted):
                a = np.moveaxis(a, ax, -1).astype(np.float64)
                d = dy64 - a
                xi = -np.sum(y64 * d, axis=-1, keepdims=True)
                s_abs_d = np.sum(np.abs(y64 * d), axis=-1, keepdims=True)
                rest = gamma(3) * np.abs(d) + gamma(2) * np.abs(d + xi)
                drift = np.abs(y64 * a * _one_minus_sum(y64, shifted)[..., None])
                accurate = model(gamma(k + 4), s_abs_d, rest) + drift
                bound = np.where(shifted[..., None], accurate, bound)
                magnitude = np.where(shifted[..., None], ay * np.abs(d + xi) + drift, magnitude)
        if rounded is not None:
            # One rounding to the half dtype: u_h |computed| + half its smallest subnormal.
            u_h = unit_roundoff(rounded)
            omega_h = float(ml_dtypes.finfo(rounded).smallest_subnormal)
            bound = bound + u_h * (magnitude + bound) + omega_h / 2
    return np.moveaxis(bound * (1 + 1e-6), -1, ax)
