r"""The library's softmax derivative registered as JAX differentiation rules (CPU).

- :func:`softmax`, a ``jax.custom_jvp``: one forward-mode rule,
  :math:`\dot y = y \odot (\dot x - \langle y, \dot x\rangle)`, linear in :math:`\dot x`. JAX
  obtains reverse mode by transposing it, and the transpose of this linear map is the VJP
  :math:`dx = y \odot (dy - \langle y, dy\rangle)` (the Jacobian is symmetric). The rule calls
  :func:`softmax` itself, so every order of differentiation, in either mode, uses it.
- :func:`native_softmax`, a ``jax.custom_vjp`` whose forward and backward run the compiled
  kernels :func:`softmax_grad.native.softmax` and :func:`softmax_grad.native.softmax_vjp`
  through ``jax.pure_callback``; reverse mode only (a custom VJP has no forward-mode rule), to
  any order: the backward's own VJP is registered too (the formula is in
  :mod:`softmax_grad.torch`'s docstring).

Both keep only :math:`y` from the forward pass (JAX's residuals). Importing this module needs
JAX; float64 needs ``jax.config.update("jax_enable_x64", True)``, as everywhere in JAX.
"""

from __future__ import annotations

import functools
import importlib

import numpy as np

from . import native
from ._validation import normalize_axis

try:  # the real JAX, never this module: import by absolute name
    jax = importlib.import_module("jax")
    jnp = importlib.import_module("jax.numpy")
except ImportError as exc:  # pragma: no cover - exercised only without JAX
    raise ImportError(
        "softmax_grad.jax needs JAX, which is not installed. Install the CPU build with "
        "`python -m pip install jax` (or run `make install` in the repository, which installs "
        f"it). The import failed with: {exc}"
    ) from exc

__all__ = ["native_softmax", "softmax"]


def _axis(x, axis, native_dtypes: bool) -> int:
    """Validate ``x`` (a JAX array or tracer) and return ``axis`` in ``range(x.ndim)``."""
    dtype = np.dtype(x.dtype)
    if native_dtypes and dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be a float32 or float64 array, got dtype {dtype}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"x must be a floating array, got dtype {dtype}")
    return normalize_axis(axis, x.ndim)


# ---- softmax: one JVP rule ---------------------------------------------------------------------


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _softmax(x, axis: int):
    # The max is a constant shift (softmax(x - c) = softmax(x)); stop_gradient states that it
    # carries no derivative. The custom rule below is what JAX differentiates in any case.
    m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    e = jnp.exp(x - m)
    return e / jnp.sum(e, axis=axis, keepdims=True)


@_softmax.defjvp
def _softmax_jvp(axis, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    y = _softmax(x, axis)  # the custom function again: higher orders use this rule too
    return y, y * (x_dot - jnp.sum(y * x_dot, axis=axis, keepdims=True))


def softmax(x, axis: int = -1):
    r"""Softmax along ``axis`` with the JVP rule :math:`\dot y = y \odot (\dot x - \langle y,
    \dot x\rangle)`.

    Forward (``jax.jvp``), reverse (``jax.grad``, ``jax.vjp``: the rule transposed) and higher
    derivatives (``jax.hessian``, Hessian-vector products) all come from the one rule; works
    under ``jax.jit`` and ``jax.vmap``.

    Parameters
    ----------
    x : jax.Array or array_like, shape (..., n, ...), floating
        Logits.
    axis : int, default -1
        The softmax axis.

    Returns
    -------
    y : jax.Array, shape and dtype of ``x``

    Raises
    ------
    TypeError
        If ``x`` is not floating or ``axis`` is not an int.
    ValueError
        If ``x`` is 0-d or ``axis`` is out of range.
    """
    x = jnp.asarray(x)
    return _softmax(x, _axis(x, axis, native_dtypes=False))


# ---- native_softmax: the C kernels through pure_callback ---------------------------------------


def _kernel_call(kernel, *arrays):
    """``kernel`` (softmax axis last) on host NumPy copies of ``arrays``, from traced code.

    ``vmap_method="broadcast_all"``: under ``jax.vmap`` the callback receives the batch as
    extra leading axes, every argument broadcast to the same shape, which the kernels take as
    more rows.
    """
    shape = jax.ShapeDtypeStruct(arrays[0].shape, arrays[0].dtype)

    def host(*values):
        return kernel(*(np.asarray(v) for v in values))

    return jax.pure_callback(host, shape, *arrays, vmap_method="broadcast_all")


def _on_last(kernel, axis: int, *arrays):
    """Apply a last-axis kernel along ``axis``: move it last, call, move it back."""
    moved = [jnp.moveaxis(a, axis, -1) for a in arrays]
    return jnp.moveaxis(_kernel_call(kernel, *moved), -1, axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _native_vjp(y, dy, axis: int):
    return _on_last(native.softmax_vjp, axis, y, dy)


def _native_vjp_fwd(y, dy, axis):
    return _native_vjp(y, dy, axis), (y, dy)


def _native_vjp_bwd(axis, residuals, g):
    y, dy = residuals
    s = jnp.sum(y * dy, axis=axis, keepdims=True)
    gy = jnp.sum(g * y, axis=axis, keepdims=True)
    return g * (dy - s) - gy * dy, _native_vjp(y, g, axis)


_native_vjp.defvjp(_native_vjp_fwd, _native_vjp_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _native_softmax(x, axis: int):
    return _on_last(native.softmax, axis, x)


def _native_softmax_fwd(x, axis):
    y = _native_softmax(x, axis)
    return y, y  # the residual: y only


def _native_softmax_bwd(axis, y, dy):
    return (_native_vjp(y, dy, axis),)


_native_softmax.defvjp(_native_softmax_fwd, _native_softmax_bwd)


def native_softmax(x, axis: int = -1):
    r"""Softmax along ``axis`` by the compiled kernels, differentiable in reverse mode.

    Forward :func:`softmax_grad.native.softmax`, backward :func:`softmax_grad.native.softmax_vjp`,
    each called through ``jax.pure_callback`` (so it works under ``jax.jit`` and ``jax.vmap``;
    the data makes a round trip to the host each call). ``jax.grad`` of ``jax.grad`` works too;
    forward mode (``jax.jvp``) does not, as for any ``jax.custom_vjp``.

    Parameters
    ----------
    x : jax.Array or array_like, shape (..., n, ...), float32 or float64
        Logits.
    axis : int, default -1
        The softmax axis.

    Returns
    -------
    y : jax.Array, shape and dtype of ``x``

    Raises
    ------
    TypeError
        If ``x`` is not float32/float64 or ``axis`` is not an int.
    ValueError
        If ``x`` is 0-d or ``axis`` is out of range.
    """
    x = jnp.asarray(x)
    return _native_softmax(x, _axis(x, axis, native_dtypes=True))
