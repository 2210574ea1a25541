"""Softmax and LogSoftmax as layers: ``forward`` caches its output, ``backward`` is the VJP."""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array, normalize_axis, same_shape
from .forward import log_softmax, softmax
from .vjp import log_softmax_vjp, softmax_vjp


class _Layer:
    """Common state: the softmax axis and the output cached by the last ``forward``.

    ``forward`` returns that cached array marked read-only: ``backward`` needs it unchanged,
    and an in-place change (``y *= 2``) raises NumPy's "assignment destination is read-only"
    instead of silently changing the gradient. Copy it (``y.copy()``) to modify it; this
    costs nothing unless you do, unlike returning a copy on every call.
    """

    def __init__(self, axis: int = -1):
        self.axis = axis
        self._out: np.ndarray | None = None

    def _keep(self, out: np.ndarray) -> np.ndarray:
        # ``out`` is new (or a view of a new array only this layer holds): read-only suffices.
        out.flags.writeable = False
        self._out = out
        return out

    def _cached(self) -> np.ndarray:
        if self._out is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward(dy) was called before forward(x): "
                "the backward pass needs the output of a forward pass"
            )
        return self._out


class Softmax(_Layer):
    r"""Softmax layer, :math:`y = \mathrm{softmax}(x)`, with the loss-independent backward.

    ``backward(dy)`` returns :math:`dx = y \odot (dy - \langle y, dy\rangle)`, by
    :func:`softmax_grad.softmax_vjp` (NumPy backend) or :func:`softmax_grad.native.softmax_vjp`,
    both called with this layer's ``accurate``.

    Parameters
    ----------
    axis : int, default -1
        The softmax axis.
    backend : {"numpy", "native"}, default "numpy"
        ``"numpy"``: :func:`softmax_grad.softmax` and :func:`softmax_grad.softmax_vjp`.
        ``"native"``: the compiled kernels :func:`softmax_grad.native.softmax` and
        :func:`softmax_grad.native.softmax_vjp` (float32/float64; integer input becomes float64;
        another ``axis`` than the last is moved to the end and back, which copies).
    isa : str, optional
        With ``backend="native"``: the instruction-set path (see
        :func:`softmax_grad.native.isas`); ``None`` picks the best.
    accurate : bool, default False
        Passed to the backend's ``softmax_vjp``: False (the default, as there) the plain
        formula on every row; True the accurate form on rows with a dominant entry, whose every
        entry keeps a relative error of a small multiple of :math:`n u` at any logit gap, at a
        measured cost (see :func:`softmax_grad.softmax_vjp`).

    Raises
    ------
    ValueError
        If ``backend`` is unknown, or ``isa`` is given without ``backend="native"``.
    TypeError
        If ``accurate`` is not a bool.
    """

    BACKENDS = ("numpy", "native")

    def __init__(
        self, axis: int = -1, backend: str = "numpy", isa: str | None = None, accurate: bool = False
    ):
        super().__init__(axis)
        if not isinstance(accurate, (bool, np.bool_)):
            raise TypeError(f"accurate must be True or False, got {accurate!r}")
        if not isinstance(backend, str) or backend not in self.BACKENDS:
            raise ValueError(
                f"unknown backend={backend!r} for Softmax; allowed: "
                + ", ".join(repr(b) for b in self.BACKENDS)
            )
        if isa is not None and backend != "native":
            raise ValueError(f"isa={isa!r} applies only to backend='native', got {backend!r}")
        self.backend = backend
        self.isa = isa
        self.accurate = bool(accurate)
        if backend == "native":
            from . import native  # imported here: the NumPy backend needs no compiled extension

            self._native = native

    def forward(self, x) -> np.ndarray:
        """Return ``softmax(x)`` (shape of ``x``, read-only) and keep it for ``backward``."""
        if self.backend == "numpy":
            return self._keep(softmax(x, axis=self.axis))
        x = as_float_array(x, "x")
        ax = normalize_axis(self.axis, x.ndim)
        y = self._native.softmax(np.moveaxis(x, ax, -1), isa=self.isa)
        return self._keep(np.moveaxis(y, -1, ax))

    def backward(self, dy) -> np.ndarray:
        """Return ``dL/dx`` (shape of ``dy``) from ``dy = dL/dy``, whatever the loss ``L``."""
        y = self._cached()
        if self.backend == "numpy":
            return softmax_vjp(y, dy, axis=self.axis, accurate=self.accurate)
        dy = as_float_array(dy, "dy")
        same_shape(y, dy, "y", "dy")
        ax = normalize_axis(self.axis, y.ndim)
        dx = self._native.softmax_vjp(
            np.moveaxis(y, ax, -1), np.moveaxis(dy, ax, -1), isa=self.isa, accurate=self.accurate
        )
        return np.moveaxis(dx, -1, ax)


class LogSoftmax(_Layer):
    r"""Log-softmax layer, :math:`\log p = x - \operatorname{logsumexp}(x)`.

    ``backward(dy)`` returns :math:`dx = dy - p \sum_j dy_j`.

    Parameters
    ----------
    axis : int, default -1
        The softmax axis.
    """

    def forward(self, x) -> np.ndarray:
        """Return ``log_softmax(x)`` (shape of ``x``, read-only) and keep it for ``backward``."""
        return self._keep(log_softmax(x, axis=self.axis))

    def backward(self, dy) -> np.ndarray:
        """Return ``dL/dx`` (shape of ``dy``) from ``dy = dL/d(log p)``."""
        return log_softmax_vjp(self._cached(), dy, axis=self.axis)
