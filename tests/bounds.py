"""Rounding bounds shared by the framework tests (tests/test_torch.py, tests/test_jax.py)."""

from __future__ import annotations

import numpy as np

import softmax_grad as sg


def vjp_bound(y, dy, dtype=None, axis: int = -1) -> np.ndarray:
    """A bound on the rounding error of any of the VJPs compared: the library's form and the
    plain formula y * (dy - <y, dy>) that PyTorch, JAX and the native kernel evaluate.

    Once the library's softmax_vjp is the accurate form, its bound (algorithm "vjp") can be below
    the plain formula's (algorithm "plain") at a dominant entry, so the larger of the two is
    taken; before that, "vjp" is the plain formula and "plain" does not exist.
    """
    bound = sg.vjp_error_bound(y, dy, dtype=dtype, axis=axis)
    try:
        plain = sg.vjp_error_bound(y, dy, dtype=dtype, axis=axis, algorithm="plain")
    except ValueError:  # no "plain" algorithm: "vjp" is the plain formula
        return bound
    return np.maximum(bound, plain)
