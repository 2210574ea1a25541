"""Input checks shared by the NumPy modules (private)."""

from __future__ import annotations

import numpy as np


def as_float_array(x, name: str) -> np.ndarray:
    """Return ``x`` as a floating array: float32/float64 kept, integers and bools to float64."""
    a = np.asarray(x)
    if a.dtype.kind in "fc":
        return a
    if a.dtype.kind in "iub":
        return a.astype(np.float64)
    raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")


def normalize_axis(axis: int, ndim: int, name: str = "axis") -> int:
    """Map a possibly negative ``axis`` into ``range(ndim)`` or raise ``ValueError``."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    if ndim == 0:
        raise ValueError("softmax needs an array with at least one dimension, got a 0-d array")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimension(s)")
    return int(axis) % ndim


def same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` showing both shapes unless they are equal."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {name_a}.shape={a.shape} "
            f"and {name_b}.shape={b.shape}"
        )


def result_dtype(*arrays: np.ndarray) -> np.dtype:
    """The floating dtype of a result: float32 only when every input is float32."""
    return np.result_type(*arrays, np.float32)
