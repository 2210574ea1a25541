r"""The library's softmax derivative registered as PyTorch autograd rules (CPU).

Two registrations of the same mathematics, :math:`y = \mathrm{softmax}(x)` along ``dim`` with
the backward :math:`dx = y \odot (dy - \langle y, dy\rangle)`:

- :func:`softmax`, a ``torch.autograd.Function`` whose forward is :func:`softmax_grad.softmax`
  and whose backward is :func:`softmax_grad.softmax_vjp` (NumPy), for float32 and float64 CPU
  tensors and any ``dim``;
- :func:`native_softmax`, the compiled kernels of :mod:`softmax_grad.native` registered as the
  PyTorch custom operators ``softmax_grad::softmax`` and ``softmax_grad::softmax_vjp``
  (``torch.library.custom_op`` with ``register_autograd`` and a fake kernel), so it also runs
  under ``torch.compile`` and passes ``torch.library.opcheck``.

Both save only the output :math:`y` for the backward pass, and both backward passes are
differentiable again (double backward): the backward :math:`(y, dy) \mapsto dx` has its own VJP.
For the gradient :math:`\overline{dx}` of a later scalar with respect to :math:`dx`,

.. math::

    \bar y = \overline{dx} \odot (dy - \langle y, dy\rangle)
        - \langle \overline{dx}, y\rangle\, dy, \qquad
    \overline{dy} = y \odot (\overline{dx} - \langle y, \overline{dx}\rangle),

and :math:`\overline{dy}` is the softmax VJP again, applied to :math:`\overline{dx}` (the
Jacobian is symmetric). ``y`` is taken to be a probability row: :math:`\bar y` is the
derivative of the formula above, exact in every direction that keeps :math:`\sum_j y_j = 1`
(the only directions a softmax output moves in); a kernel that evaluates an equivalent form on
probability rows may differ from it by a multiple of :math:`\mathbf 1`, which the chain to the
logits removes (:math:`J \mathbf 1 = 0`).

Importing this module needs PyTorch; it registers the two operators once.
"""

from __future__ import annotations

import importlib

import numpy as np

from . import native
from ._validation import normalize_axis
from .forward import softmax as _np_softmax
from .vjp import softmax_vjp as _np_softmax_vjp

try:  # the real PyTorch, never this module: import by absolute name
    torch = importlib.import_module("torch")
except ImportError as exc:  # pragma: no cover - exercised only without PyTorch
    raise ImportError(
        "softmax_grad.torch needs PyTorch, which is not installed. Install the CPU build with "
        "`python -m pip install torch --index-url https://download.pytorch.org/whl/cpu` "
        "(or run `make install` in the repository, which installs it). "
        f"The import failed with: {exc}"
    ) from exc

__all__ = ["native_softmax", "softmax"]

_DTYPES = (torch.float32, torch.float64)


def _check(x, name: str, dim) -> int:
    """Validate a tensor argument and return ``dim`` in ``range(x.ndim)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 tensor, got dtype {x.dtype}")
    if x.device.type != "cpu":
        raise ValueError(f"{name} must be on the CPU, got device {x.device}")
    return normalize_axis(dim, x.ndim, "dim")


def _numpy(t) -> np.ndarray:
    """The NumPy view of a CPU tensor (a copy only if its sign or conjugate bit is set)."""
    return t.detach().resolve_neg().resolve_conj().numpy()


def _grad_y_of_vjp(y, dy, g, dim: int):
    r"""The part of the backward's VJP that goes to ``y``, for ``g`` :math:`= \overline{dx}`:
    :math:`\bar y = g \odot (dy - \langle y, dy\rangle) - \langle g, y\rangle\,dy`, in
    PyTorch operations (differentiable again)."""
    s = (y * dy).sum(dim, keepdim=True)
    gy = (g * y).sum(dim, keepdim=True)
    return g * (dy - s) - gy * dy


# ---- softmax: NumPy forward and backward in a torch.autograd.Function -------------------------


class _SoftmaxVJP(torch.autograd.Function):
    """``(y, dy) -> dx`` by :func:`softmax_grad.softmax_vjp`; its backward is the VJP's VJP."""

    @staticmethod
    def forward(ctx, y, dy, dim: int):
        ctx.save_for_backward(y, dy)
        ctx.dim = dim
        return torch.from_numpy(_np_softmax_vjp(_numpy(y), _numpy(dy), axis=dim))

    @staticmethod
    def backward(ctx, g):
        y, dy = ctx.saved_tensors
        grad_y = _grad_y_of_vjp(y, dy, g, ctx.dim) if ctx.needs_input_grad[0] else None
        grad_dy = _SoftmaxVJP.apply(y, g, ctx.dim) if ctx.needs_input_grad[1] else None
        return grad_y, grad_dy, None


class _Softmax(torch.autograd.Function):
    """``x -> y`` by :func:`softmax_grad.softmax`; saves ``y``; backward is ``_SoftmaxVJP``."""

    @staticmethod
    def forward(ctx, x, dim: int):
        y = torch.from_numpy(_np_softmax(_numpy(x), axis=dim))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return _SoftmaxVJP.apply(y, dy, ctx.dim), None


def softmax(x, dim: int = -1):
    r"""Softmax along ``dim`` with the library's loss-independent backward, as autograd sees it.

    The forward pass is :func:`softmax_grad.softmax` and the backward pass
    :func:`softmax_grad.softmax_vjp`, :math:`dx = y \odot (dy - \langle y, dy\rangle)`, both in
    NumPy on the tensors' memory; only :math:`y` is saved for the backward pass. The backward is
    itself differentiable (second derivatives, Hessian-vector products): see the module
    docstring for its VJP.

    Parameters
    ----------
    x : torch.Tensor, shape (..., n, ...), float32 or float64, on the CPU
        Logits.
    dim : int, default -1
        The softmax dimension.

    Returns
    -------
    y : torch.Tensor, shape and dtype of ``x``

    Raises
    ------
    TypeError
        If ``x`` is not a tensor or not float32/float64, or ``dim`` is not an int.
    ValueError
        If ``x`` is not on the CPU, is 0-d, or ``dim`` is out of range.
    """
    return _Softmax.apply(x, _check(x, "x", dim))


# ---- native_softmax: the C kernels as PyTorch custom operators ---------------------------------


def _last(t, dim: int) -> np.ndarray:
    """``t`` with ``dim`` moved last, C-contiguous, as NumPy (the kernels' layout)."""
    return _numpy(t.movedim(dim, -1).contiguous())


def _from_last(a: np.ndarray, dim: int):
    """The kernel's result (softmax axis last) back in the caller's layout, contiguous."""
    return torch.from_numpy(a).movedim(-1, dim).contiguous()


@torch.library.custom_op("softmax_grad::softmax", mutates_args=(), device_types="cpu")
def _softmax_op(x: torch.Tensor, dim: int) -> torch.Tensor:
    return _from_last(native.softmax(_last(x, dim)), dim)


@torch.library.custom_op("softmax_grad::softmax_vjp", mutates_args=(), device_types="cpu")
def _softmax_vjp_op(y: torch.Tensor, dy: torch.Tensor, dim: int) -> torch.Tensor:
    return _from_last(native.softmax_vjp(_last(y, dim), _last(dy, dim)), dim)


@_softmax_op.register_fake
def _(x, dim):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@_softmax_vjp_op.register_fake
def _(y, dy, dim):
    return torch.empty_like(y, memory_format=torch.contiguous_format)


def _save_output(ctx, inputs, output):
    ctx.save_for_backward(output)
    ctx.dim = inputs[1]


def _softmax_backward(ctx, dy):
    (y,) = ctx.saved_tensors
    return _softmax_vjp_op(y, dy, ctx.dim), None


def _save_inputs(ctx, inputs, output):
    y, dy, dim = inputs
    ctx.save_for_backward(y, dy)
    ctx.dim = dim


def _softmax_vjp_backward(ctx, g):
    y, dy = ctx.saved_tensors
    grad_y = _grad_y_of_vjp(y, dy, g, ctx.dim) if ctx.needs_input_grad[0] else None
    grad_dy = _softmax_vjp_op(y, g, ctx.dim) if ctx.needs_input_grad[1] else None
    return grad_y, grad_dy, None


torch.library.register_autograd(_softmax_op, _softmax_backward, setup_context=_save_output)
torch.library.register_autograd(_softmax_vjp_op, _softmax_vjp_backward, setup_context=_save_inputs)


def native_softmax(x, dim: int = -1):
    r"""Softmax along ``dim`` by the compiled kernels, as the custom operator
    ``torch.ops.softmax_grad.softmax``.

    Forward :func:`softmax_grad.native.softmax`, backward the operator
    ``torch.ops.softmax_grad.softmax_vjp`` (:func:`softmax_grad.native.softmax_vjp`), which is
    differentiable again. Both have fake kernels, so ``torch.compile`` traces through them
    without a graph break. Another ``dim`` than the last is moved to the end for the kernel and
    back (a copy); results are contiguous.

    Parameters
    ----------
    x : torch.Tensor, shape (..., n, ...), float32 or float64, on the CPU
        Logits.
    dim : int, default -1
        The softmax dimension.

    Returns
    -------
    y : torch.Tensor, shape and dtype of ``x``, contiguous

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax`.
    """
    return _softmax_op(x, _check(x, "x", dim))
