"""Input checks shared by the NumPy modules (private)."""

from __future__ import annotations

import ml_dtypes
import numpy as np

# Half-precision storage dtypes: computed in float32, returned in their own dtype.
HALF_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def _refuse_masked_array(x, name: str) -> None:
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a numpy masked array, whose mask would be ignored; pass "
            f"np.ma.getdata({name}) and the mask as where=~np.ma.getmaskarray({name}) "
            "(True keeps an entry)"
        )


def unit_roundoff(dtype) -> float:
    """u = eps/2 of a floating dtype, bfloat16 included (NumPy's finfo does not know it)."""
    return float(ml_dtypes.finfo(dtype).eps) / 2


def as_working(arrays, names) -> tuple[list[np.ndarray], np.dtype | None]:
    """Floating arrays in the precision the arithmetic uses, and the dtype to return.

    float16 and bfloat16 are computed in float32: a float16 sum overflows beyond 65504 (softmax
    of 70000 zeros would be 0 everywhere) and NumPy has no bfloat16 loops. When every input has
    the same half dtype the result is rounded back to it once (the returned dtype); otherwise
    the float32 copies promote as usual and ``None`` is returned. Other dtypes as
    :func:`as_float_array`.
    """
    for a, name in zip(arrays, names, strict=True):
        _refuse_masked_array(a, name)
    raw = [np.asarray(a) for a in arrays]
    dtypes = {a.dtype for a in raw}
    back = raw[0].dtype if len(dtypes) == 1 and raw[0].dtype in HALF_DTYPES else None
    out = [
        a.astype(np.float32) if a.dtype in HALF_DTYPES else as_float_array(a, name)
        for a, name in zip(raw, names, strict=True)
    ]
    return out, back


def returned(result: np.ndarray, back) -> np.ndarray:
    """``result`` rounded once to ``back``, the half dtype :func:`as_working` returned, if any."""
    return result if back is None else result.astype(back)


def as_float_array(x, name: str) -> np.ndarray:
    """Return ``x`` as a floating array: float32/float64 kept, integers and bools to float64.

    NumPy masked arrays are refused: ``np.asarray`` would silently drop their mask. The
    functions take the mask as ``where=`` instead.
    """
    _refuse_masked_array(x, name)
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


def as_mask(where, shape: tuple, name: str = "where") -> np.ndarray | None:
    """``where`` as a boolean array of ``shape`` (broadcast), or ``None`` for no mask.

    True keeps an entry. Only booleans are accepted: an integer or float array would be read
    as indices or weights by other libraries, so guessing would give a silent wrong answer.
    """
    if where is None:
        return None
    mask = np.asarray(where)
    if mask.dtype != np.bool_:
        raise TypeError(
            f"{name} must be a boolean array (True keeps an entry), got dtype {mask.dtype}"
        )
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"{name}.shape={mask.shape} does not broadcast to the input's shape {shape}"
        ) from None
