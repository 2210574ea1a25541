r"""Compiled softmax kernels (scalar C, AVX2+FMA, AVX-512F), chosen at run time.

The C code in ``csrc/`` is compiled into ``softmax_grad._native`` (cffi API mode) when the package
is installed; importing this module never compiles anything. Every function here takes NumPy
arrays whose **last axis** is the softmax axis, with any number of leading axes, in float32 or
float64, and for :func:`softmax` and :func:`softmax_vjp` also float16 and bfloat16
(``ml_dtypes``), computed in float32 and rounded once on store (all arrays of one call share
the dtype, and so does the result). Every argument is
checked before a kernel runs (two pointer checks, alignment and overlap, by the C entry points;
see ``_run``); inputs that are not C-contiguous and aligned are copied, and nothing outside ``out``
is ever written.

``isa`` picks the instruction-set path: one of :func:`isas` (``None`` = the best, the last one).
``threads`` is the most threads that may share the rows (``None`` = the usable CPUs; small calls
use fewer, see :func:`default_threads`): the calling thread and workers of a pool kept by the C
library, started on first need. Every sum in a row is taken in one fixed order that depends on
the row's length only (see :func:`summation_depth`), and every other operation is elementwise and
the same on every path, so :func:`softmax` and :func:`softmax_vjp` give bitwise identical results
for any ``threads``, any address of the inputs and outputs, and every ISA path (scalar included;
x86-64 and AArch64 alike). The one exception is the sign and payload of a NaN: where a NaN lands
is the same everywhere, but the bits of a NaN the hardware generates (``inf - inf``) differ
between paths (x86's default NaN is negative, AArch64's positive, and the scalar and SIMD paths of
one CPU may take it from different operands).
Every function takes its arguments in the same order: the inputs, then ``out``, ``isa``,
``threads``.

Examples
--------
>>> import numpy as np
>>> from softmax_grad import native
>>> y = native.softmax(np.array([[0.0, 1.0, 2.0]]))
>>> dx = native.softmax_vjp(y, np.array([[1.0, 0.0, 0.0]]))
"""

from __future__ import annotations

import os
from typing import NamedTuple

import ml_dtypes
import numpy as np

try:
    from . import _native
except ImportError as exc:  # pragma: no cover - exercised only without a build
    raise ImportError(
        "softmax_grad.native needs the compiled extension softmax_grad._native, which is built "
        "when the package is installed. From the repository root run `make install` (or "
        "`python -m pip install -e .`); a C compiler (gcc or clang) is required. "
        f"The import failed with: {exc}"
    ) from exc

__all__ = [
    "CrossEntropy",
    "default_threads",
    "isas",
    "jacobian_product_quadratic",
    "logsumexp",
    "softmax",
    "softmax_cross_entropy",
    "softmax_vjp",
    "stream_add",
    "summation_depth",
]

_ffi = _native.ffi
_lib = _native.lib

#: Every ISA name this module knows, in the order of the C enum (``SG_ISA_*``): worst to best
#: within an architecture (x86-64 never has ``"neon"``, AArch64 never the x86 paths).
ALL_ISAS = ("scalar", "avx2", "avx512", "neon")
_MASK = _lib.sg_available_isas()
_AVAILABLE = tuple(name for bit, name in enumerate(ALL_ISAS) if _MASK >> bit & 1)
_ISA_INDEX = {name: ALL_ISAS.index(name) for name in _AVAILABLE}
_BEST = _ISA_INDEX[_AVAILABLE[-1]]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_F16 = np.dtype(np.float16)
_BF16 = np.dtype(ml_dtypes.bfloat16)
_U16 = np.dtype(np.uint16)
_ndarray = np.ndarray
_empty = np.empty
_from_buffer = _ffi.from_buffer

#: Bytes a call moves (all its streams, weighted by the work per byte) per thread it may use:
#: one thread below this, one more per further step (see :func:`default_threads`). Measured with
#: the C worker pool; see bench/README.md, "Design measurements".
THREAD_THRESHOLD_BYTES = 256 << 10
try:
    _CPUS = len(os.sched_getaffinity(0))
except AttributeError:  # pragma: no cover - not Linux
    _CPUS = os.cpu_count() or 1


class _Op(NamedTuple):
    """One operation: its kernels and what the shared call path needs to know about it.

    ``f32``, ``f64``, ``f16``, ``bf16`` come first, so the fast path reads them by index (a
    tuple index is cheaper than a named field); each is ``(cffi pointer type, C function, work
    bytes per element, itemsize)``, the work bytes being ``weight * itemsize`` (0 for the O(n^2)
    kernel, whose work per element is ``n * itemsize``), or None where the operation has no
    kernel for that dtype (the half ones take the 16-bit patterns as ``uint16_t``).
    """

    f32: tuple
    f64: tuple
    f16: tuple | None
    bf16: tuple | None
    names: tuple  # the argument names, for error messages: ("y", "dy") or ("x",)
    weight: int  # work per byte of one array, relative to the VJP's 3 streams; 0: n (O(n^2))
    elementwise: bool  # True: any element may start a thread's block; False: whole rows


_P32, _P64, _P16 = _ffi.typeof("float *"), _ffi.typeof("double *"), _ffi.typeof("uint16_t *")


def _op(name: str, names: tuple, weight: int, elementwise: bool = False, half=False) -> _Op:
    def kernel(suffix, ct, itemsize):
        return (ct, getattr(_lib, f"sg_{name}_{suffix}"), itemsize * weight, itemsize)

    f16, bf16 = (kernel("f16", _P16, 2), kernel("bf16", _P16, 2)) if half else (None, None)
    return _Op(
        kernel("f32", _P32, 4), kernel("f64", _P64, 8), f16, bf16, names, weight, elementwise
    )


# The pointer table: every C entry point this module calls.
_VJP = _op("softmax_vjp", ("y", "dy"), 3, half=True)
_VJP_ACCURATE = _op("softmax_vjp_accurate", ("y", "dy"), 3, half=True)
# The forward pass costs more per byte than the VJP (its exp): 2 streams, each byte weighing 4
# (bench/README.md, "Design measurements").
_SOFTMAX = _op("softmax", ("x",), 2 * 4, half=True)
_SOFTMAX_ONLINE = _op("softmax_online", ("x",), 2 * 4, half=True)
_QUADRATIC = _op("jacobian_product_quadratic", ("y", "dy"), 0)
_ADD = _op("stream_add", ("a", "b"), 3, elementwise=True)
# Where each dtype's kernel sits in an _Op.
_KERNEL_INDEX = {_F32: 0, _F64: 1, _F16: 2, _BF16: 3}


def isas() -> tuple[str, ...]:
    """The instruction-set paths usable on this CPU, ordered worst to best (best last).

    Returns
    -------
    tuple of str
        Always starts with ``"scalar"``; then ``"avx2"`` when the CPU has AVX2, FMA and F16C
        (float16 conversions) and the OS saves the YMM registers, and ``"avx512"`` when it also
        has AVX-512F with ZMM state enabled (checked with ``cpuid`` and ``xgetbv`` once, in C).
        On AArch64: ``"scalar"`` and ``"neon"`` (part of every AArch64 CPU).
    """
    return _AVAILABLE


def default_threads(nbytes: int, rows: int, threads: int | None = None) -> int:
    """How many threads a call with ``nbytes`` of work over ``rows`` rows really uses.

    ``threads`` (default: the usable CPUs) is a maximum: one more thread per
    :data:`THREAD_THRESHOLD_BYTES` of work, and never more threads than rows (a row is never split
    between threads; for the elementwise :func:`stream_add`, pass its element count). So small
    calls run on the calling thread alone, even with ``threads=2``, as PyTorch's
    ``parallel_for`` does with its grain size. ``nbytes`` is the bytes of all streams (3 arrays
    for the VJP) times the work per byte relative to the VJP: 4 for :func:`softmax` (its exp),
    ``n`` for :func:`jacobian_product_quadratic`.
    """
    limit = _CPUS if threads is None else threads
    return max(1, min(limit, rows, 1 + nbytes // THREAD_THRESHOLD_BYTES))


_SUM_BYTES = _lib.SG_SUM_BYTES
_SUM_ROUNDS = _lib.SG_SUM_ROUNDS


def summation_depth(n: int, dtype) -> int:
    r"""The rounding depth :math:`k` of the native kernels' sums of ``n`` terms in ``dtype``.

    Every sum in a row (the VJP's :math:`\langle y, dy\rangle` and its shifted sum, the forward
    pass's :math:`\sum_j e^{x_j - m}`, the latter always in float64) is taken in one order, the
    same on every ISA path and at any address: :math:`\Lambda` = 256 bytes' worth of lanes
    (64 for float32, 32 for float64), element :math:`j` of a block in lane
    :math:`j \bmod \Lambda`, each lane adding its :math:`R` = 16 terms of the block in index
    order; a block's lanes combined by a halving tree (:math:`\log_2 \Lambda` levels), and the
    blocks of :math:`K = R \Lambda` elements combined
    pairwise (:math:`\lceil\log_2 \lceil n/K\rceil\rceil` levels). A term therefore passes
    through at most :math:`k - 1` additions after its own product is rounded, with

    .. math::

        k(n) = \min(R, \lceil n/\Lambda\rceil) + \lceil\log_2 \min(n, \Lambda)\rceil
        + \lceil\log_2 \lceil n/K \rceil\rceil,

    so a computed dot product is within :math:`\gamma_k \sum_j |y_j\,dy_j|` of the exact one
    {Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1}: :math:`k` takes the place
    of :math:`n` in the bound of a sequential sum, and grows like :math:`\log_2 n` (22 at
    :math:`n` = 1000, 34 at :math:`2^{22}`), not like :math:`n`. It is the ``depth``
    that bounds :func:`softmax_vjp` through :func:`softmax_grad.vjp_error_bound`.

    Parameters
    ----------
    n : int >= 0
        Terms in the sum (the row length).
    dtype : float32 or float64
        The dtype whose lanes the sum uses.

    Returns
    -------
    int
        :math:`k(n)`; 0 for ``n = 0``.
    """
    dt = np.dtype(dtype)
    if dt not in (_F32, _F64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    n = int(n)
    if n == 0:
        return 0
    lanes = _SUM_BYTES // dt.itemsize
    block = _SUM_ROUNDS * lanes
    rounds = min(_SUM_ROUNDS, -(-n // lanes))
    tree = (min(n, lanes) - 1).bit_length()
    blocks = -(-n // block)
    return rounds + tree + (blocks - 1).bit_length()


def _pool_workers() -> int:
    """Worker threads the C pool holds now (0 before the first multithreaded call, and in a
    fresh fork child); for tests."""
    return _lib.sg_pool_workers()


# ---- validation (the slow path) ----------------------------------------------------------------


def _isa_index(isa) -> int:
    if isa is None:
        return _BEST
    index = _ISA_INDEX.get(isa) if isinstance(isa, str) else None
    if index is not None:
        return index
    if isinstance(isa, str) and isa in ALL_ISAS:
        raise ValueError(
            f"isa={isa!r} is not available on this CPU; available here: {', '.join(_AVAILABLE)}"
        )
    raise ValueError(f"unknown isa={isa!r}; allowed: None or one of {', '.join(ALL_ISAS)}")


def _threads(threads, nbytes: int, units: int) -> int:
    if threads is None:
        return default_threads(nbytes, units)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be None or an int >= 1, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads={threads} is not allowed; use None or an int >= 1")
    return default_threads(nbytes, units, int(threads))


def _as_input(a, name: str, half: bool) -> np.ndarray:
    """``a`` as a C-contiguous, aligned, native-endian float32/float64 (or, with ``half``, also
    float16/bfloat16) array, copied if needed."""
    arr = np.asarray(a)
    dt = arr.dtype
    ok = dt in _KERNEL_INDEX or (dt.kind == "f" and dt.newbyteorder("=") in _KERNEL_INDEX)
    if not ok or (dt.itemsize == 2 and not half):
        allowed = "float32, float64, float16 or bfloat16" if half else "float32 or float64"
        raise TypeError(f"{name} must be a {allowed} array, got dtype {dt}")
    if arr.ndim == 0:
        raise ValueError(
            f"{name} must have at least one dimension (the softmax axis is the last one), "
            "got a 0-d array"
        )
    if not dt.isnative:
        return arr.astype(dt.newbyteorder("="), order="C")
    flags = arr.flags
    if not (flags.c_contiguous and flags.aligned):
        return np.array(arr, order="C", copy=True)  # a fresh array is aligned
    return arr


def _check_out(out, shape: tuple, dtype: np.dtype, inputs: tuple) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray or None, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype} like the inputs, got dtype {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape} like the inputs, got shape {out.shape}")
    flags = out.flags
    if not flags.c_contiguous:
        raise ValueError(
            f"out must be C-contiguous (strides {out.strides} for shape {out.shape} are not); "
            "pass a contiguous array or out=None"
        )
    if not flags.aligned:
        raise ValueError(f"out must be aligned to its {out.itemsize}-byte elements")
    if not flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")
    for name, arr in inputs:
        if np.may_share_memory(out, arr):
            raise ValueError(f"out must not overlap the input {name}; pass a separate array")
    return out


def _slow(op: _Op, a, b, out, isa, threads) -> np.ndarray:
    """Validate everything, copy inputs that need it, raise the precise error; then call."""
    names = op.names
    half = op.f16 is not None
    arrays = tuple(_as_input(v, name, half) for v, name in zip((a, b), names, strict=False))
    first, first_name = arrays[0], names[0]
    for v, name in zip(arrays[1:], names[1:], strict=True):
        if v.dtype != first.dtype:
            raise TypeError(
                f"{first_name} and {name} must have the same dtype, got {first.dtype} and {v.dtype}"
            )
        if v.shape != first.shape:
            raise ValueError(
                f"{first_name} and {name} must have the same shape, got "
                f"{first_name}.shape={first.shape} and {name}.shape={v.shape}"
            )
    index = _isa_index(isa)
    size, n = first.size, first.shape[-1]
    rows = size // n if n else 0
    work = (op.weight or n) * first.nbytes
    nthreads = _threads(threads, work, size if op.elementwise else rows)
    if out is None:
        out = np.empty(first.shape, first.dtype)
    else:
        out = _check_out(out, first.shape, first.dtype, tuple(zip(names, arrays, strict=True)))
    ct, fn = op[_KERNEL_INDEX[first.dtype]][:2]
    if first.itemsize == 2:  # the C side takes the 16-bit patterns
        arrays, bits = tuple(v.view(_U16) for v in arrays), out.view(_U16)
    else:
        bits = out
    pointers = [_from_buffer(ct, v) for v in arrays]
    status = fn(*pointers, _from_buffer(ct, bits, require_writable=True), rows, n, index, nthreads)
    if status:  # pragma: no cover - the checks above make this unreachable
        raise RuntimeError(f"native kernel rejected its arguments (status {status})")
    return out


# ---- the fast path -------------------------------------------------------------------------------


def _run(op: _Op, a, b, out, isa, threads) -> np.ndarray:
    """The call path of every public function (``b`` is None for one input).

    It first recognises the common call -- ndarrays of one float dtype and shape, a known
    ``isa``, ``threads`` None or an int >= 1, ``out`` None or an ndarray like the inputs -- with
    a few attribute reads, and leaves the rest to checks that cost nothing extra:
    ``ffi.from_buffer`` refuses arrays that are not C-contiguous (and a read-only ``out``), and
    the C entry point returns a status instead of running on a misaligned pointer or an ``out``
    that overlaps an input. Read-only inputs are fine. Anything else, and any nonzero status, goes
    to :func:`_slow`, which copies what it must or raises the precise error. On small arrays an
    attribute read costs as much as the kernel's work, so nothing is read twice and nothing is
    checked in Python that C or cffi checks anyway.
    """
    if type(a) is _ndarray:
        dt = a.dtype
        kernel = (
            op[0]
            if dt is _F32
            else op[1]
            if dt is _F64
            else op[2]
            if dt is _F16
            else op[3]
            if dt is _BF16
            else None
        )
        shape = a.shape
        index = _BEST if isa is None else _ISA_INDEX.get(isa) if type(isa) is str else None
        if (
            kernel is not None
            and index is not None
            and (b is None or (type(b) is _ndarray and b.dtype is dt and b.shape == shape))
            and (out is None or (type(out) is _ndarray and out.dtype is dt and out.shape == shape))
            and (threads is None or (type(threads) is int and threads >= 1))
            and shape
        ):
            ct, fn, per_element, itemsize = kernel
            try:
                pa = _from_buffer(ct, a)
                pb = None if b is None else _from_buffer(ct, b)
                if out is None:
                    res = _empty(shape, dt)
                    po = _from_buffer(ct, res)
                else:
                    res = out
                    po = _from_buffer(ct, out, True)
            except (ValueError, TypeError, BufferError):
                pass  # not C-contiguous, or out read-only: the slow path copies or raises
            else:
                size = a.size
                n = shape[-1]
                rows = size // n if n else 0
                work = size * (per_element or n * itemsize)
                if work < THREAD_THRESHOLD_BYTES or threads == 1:
                    t = 1  # default_threads' answer, without its arithmetic
                else:
                    t = default_threads(work, size if op.elementwise else rows, threads)
                if b is None:
                    status = fn(pa, po, rows, n, index, t)
                else:
                    status = fn(pa, pb, po, rows, n, index, t)
                if not status:
                    return res
                # misaligned or overlapping: the slow path copies the misaligned inputs or
                # raises the precise error
    return _slow(op, a, b, out, isa, threads)


# ---- public functions --------------------------------------------------------------------------


def _vjp_op(accurate) -> _Op:
    """The VJP's kernels for ``accurate`` (a bool, NumPy's included), or a TypeError."""
    if isinstance(accurate, (bool, np.bool_)):
        return _VJP_ACCURATE if accurate else _VJP
    raise TypeError(f"accurate must be True or False, got {accurate!r}")


def softmax_vjp(y, dy, out=None, isa=None, threads=None, accurate=False) -> np.ndarray:
    r"""Backward of softmax along the last axis: :math:`dx = y \odot (dy - \langle y, dy\rangle)`.

    For each row, :math:`dx_i = y_i\,(dy_i - \sum_j y_j\,dy_j)`, which is :math:`J^\top dy` with
    :math:`J = \operatorname{diag}(y) - y y^\top`, in O(n) per row and without forming :math:`J`.

    **Confident rows: accurate on request.** Where a row has an entry :math:`y_c \ge 1/2` (c the
    first index of the row's maximum), the formula cancels at :math:`c`: :math:`dy_c -
    \langle y, dy\rangle` loses what the rounding of :math:`y_c` towards 1 hides (all of it once
    :math:`y_c` rounds to 1). With ``accurate=True`` such rows are computed as
    :math:`dx_i = y_i\,((dy_i - a) + \xi)` with :math:`a = dy_c` and
    :math:`\xi = \sum_j y_j\,(a - dy_j)`, equal to the formula when :math:`\sum_j y_j = 1` and
    accurate at every entry: each gets a relative error of a small multiple of :math:`n u`
    measured from the logits, at any gap, where the plain formula loses all digits of
    :math:`dx_c`. The rule, the same as :func:`softmax_grad.softmax_vjp`'s: a row takes this form
    iff (i) :math:`y_c \ge 1/2`, (ii) it is a probability vector up to rounding,
    :math:`|1 - \sum_j y_j| \le (n + 16)\,u` (:math:`u` the unit roundoff of ``y``'s dtype; the
    sum in the order of :func:`summation_depth`), (iii) :math:`\langle y, dy\rangle` and (iv)
    :math:`\xi` are finite. Every other row -- without an entry :math:`\ge 1/2`, not summing to 1
    (any ``y`` that is no softmax output, e.g. ``[0.9, 0.3]``), with a NaN or an infinity, or with
    an overflowing sum -- is the plain formula bit for bit (two operations, subtract then
    multiply), so NaN and inf propagate as in :func:`softmax_grad.softmax_vjp`.
    **The default is the plain formula** (``accurate=False``) for every row: the accurate form
    costs more than the 5 % the project allows a default (its dot product's pass keeps the
    row's maximum, and a confident row takes a search for c and one more pass over the row; the
    measured cost is in bench/README.md, "Design measurements", from
    ``python -m bench.accurate_cost``).

    **Reproducible bits.** Every sum is taken in the one order of :func:`summation_depth`, so the
    result is bitwise the same for any ``threads``, any address of ``y``, ``dy`` and ``out``, and
    every ISA path, including when a sum overflows (NaN bits aside: see the module's
    docstring). Plain rows are within :func:`softmax_grad.vjp_error_bound` of the exact VJP,
    with :func:`summation_depth` in place of n (its ``depth``, where that function takes one).

    **Half precision.** float16 and bfloat16 rows are converted to float32 in registers,
    computed exactly as the float32 kernel computes the converted rows (the same sums in the
    same order) and rounded once on store, to nearest even (NaN stays NaN, a result beyond the
    range becomes inf): every entry is within :math:`u_h |dx_i|` of the float32 result, plus
    half the dtype's smallest subnormal. The only difference from the float32 call on
    ``y.astype(np.float32)``: the probability-row test (ii) uses the half dtype's :math:`u`, as
    :func:`softmax_grad.softmax_vjp` does, since half probabilities sum to 1 only within their
    own rounding.

    Parameters
    ----------
    y : array_like, shape (..., n), float32, float64, float16 or bfloat16
        Softmax output of the forward pass.
    dy : array_like, same shape and dtype as ``y``
        Upstream gradient :math:`\partial L / \partial y`.
    out : ndarray, optional
        C-contiguous, writeable array of the same shape and dtype, not overlapping ``y`` or
        ``dy``, that receives the result; only its elements are written.
    isa : {None, "scalar", "avx2", "avx512", "neon"}, optional
        Instruction-set path; ``None`` picks the best of :func:`isas`.
    threads : int >= 1, optional
        At most this many threads share the rows (fewer for small calls, see
        :func:`default_threads`); ``None`` allows as many as there are usable CPUs.
    accurate : bool, default False
        True computes confident rows in the accurate form (above); False, every row in the plain
        form.

    Returns
    -------
    dx : ndarray, shape (..., n), dtype of ``y``
        ``out`` if given.

    Raises
    ------
    TypeError
        If a dtype is not float32/float64/float16/bfloat16, the dtypes differ, ``out`` has
        another dtype, or ``accurate`` is not a bool.
    ValueError
        If the shapes differ, ``out`` is unusable, ``isa`` is unknown or unavailable, or
        ``threads < 1``.
    """
    op = _VJP if accurate is False else _VJP_ACCURATE if accurate is True else _vjp_op(accurate)
    return _run(op, y, dy, out, isa, threads)


#: The forward pass's two algorithms. ``"online"`` reads each row once from memory for its
#: maximum and its sum (the state of :func:`softmax_grad.merge_logsumexp`, merged block by block),
#: then writes y; ``"multipass"`` takes the maximum, the exponentials, their sum and the scaling
#: as passes over the row, writing the exponentials into the output first.
SOFTMAX_ALGORITHMS = ("online", "multipass")

#: The algorithm ``softmax(algorithm=None)`` takes (bench/README.md, "At scale", measures both).
SOFTMAX_DEFAULT = "multipass"

#: The length of the online kernels' blocks. Rows up to this long are one block, and the online
#: pass gives them the multipass kernel's bits.
ONLINE_BLOCK = 4096


def _softmax_op(algorithm) -> _Op:
    if algorithm == "online":
        return _SOFTMAX_ONLINE
    if algorithm is None:
        return _SOFTMAX_DEFAULT
    if algorithm == "multipass":
        return _SOFTMAX
    allowed = ", ".join(map(repr, SOFTMAX_ALGORITHMS))
    raise ValueError(f"unknown algorithm={algorithm!r}; allowed: None, {allowed}")


_SOFTMAX_DEFAULT = {"online": _SOFTMAX_ONLINE, "multipass": _SOFTMAX}[SOFTMAX_DEFAULT]


def softmax(x, out=None, isa=None, threads=None, algorithm=None) -> np.ndarray:
    r"""Softmax along the last axis: :math:`y_i = e^{x_i - m} / \sum_j e^{x_j - m}`.

    :math:`m = \max_j x_j` (0 when that is not finite, as in :func:`softmax_grad.softmax`), so no
    exponent overflows. The vectorized exp is accurate to a few float32 ulps (relative error well
    below 3e-6) or a few float64 ulps (below 1e-13), including the argument ``x - m``, which is
    corrected for its rounding error. The sum :math:`\sum_j e^{x_j - m}` is taken in float64 (for
    float32 rows too) in the order of :func:`summation_depth`, so its relative error is at most
    :math:`\gamma_k` with :math:`k = ` ``summation_depth(n, float64)`` (34 at
    :math:`n = 2^{22}`): the 1e-13 holds at any length a row can have in memory, and the result is
    bitwise the same on every ISA path, at any address and for any ``threads`` (NaN bits aside:
    see the module's docstring). A ``-inf`` logit
    gives exactly 0; a row of only ``-inf``, or with NaN or ``+inf``, is NaN throughout -- all
    exactly as the NumPy formula. float16 and bfloat16 rows are computed in float32 (the sum in
    float64) and rounded once on store: the result is bitwise the float32 call on
    ``x.astype(np.float32)``, rounded to ``x``'s dtype, so 70000 float16 zeros give
    ``float16(1/70000)``, not 0.

    Parameters
    ----------
    x : array_like, shape (..., n), float32, float64, float16 or bfloat16
        Logits.
    out : ndarray, optional
        C-contiguous, writeable array of the same shape and dtype, not overlapping ``x``.
    isa : {None, "scalar", "avx2", "avx512", "neon"}, optional
        Instruction-set path; ``None`` picks the best of :func:`isas`.
    threads : int >= 1, optional
        At most this many threads share the rows (fewer for small calls, see
        :func:`default_threads`); ``None`` allows as many as there are usable CPUs.
    algorithm : {None, "online", "multipass"}, optional
        ``"online"`` reads each row once from memory for its maximum and its sum, in blocks of
        :data:`ONLINE_BLOCK` elements merged as in :func:`softmax_grad.merge_logsumexp`, and
        writes y once; ``"multipass"`` (the default, ``None``) writes the exponentials into
        ``out`` and scales them there, which costs one more pass over memory when the rows do
        not fit in cache. Rows of at most :data:`ONLINE_BLOCK` elements get
        the same bits from both; a longer row's online sum is merged from blocks (rounded
        differently, within the same bound, and the same on every path).

    Returns
    -------
    y : ndarray, shape (..., n), dtype of ``x``
        ``out`` if given.

    Raises
    ------
    TypeError
        If the dtype is not float32/float64/float16/bfloat16 or ``out`` has another dtype.
    ValueError
        If ``x`` is 0-d, ``out`` is unusable, ``isa`` is unknown or unavailable,
        ``threads < 1``, or ``algorithm`` is unknown.
    """
    op = _SOFTMAX_DEFAULT if algorithm is None else _softmax_op(algorithm)
    return _run(op, x, None, out, isa, threads)


def jacobian_product_quadratic(y, dy, out=None, isa=None, threads=1) -> np.ndarray:
    r"""The source thread's O(n²) algorithm for :math:`J^\top dy`, row by row.

    For each row and each :math:`i`, :math:`dx_i = \sum_j dy_j\,y_j\,(-y_i)`, then
    :math:`dx_i \mathrel{+}= y_i\,dy_i`: one pass over the whole row per output element, so
    :math:`n^2` multiply-adds per row where :func:`softmax_vjp` needs :math:`2n`. The scalar path
    is the thread's "non-SSE" loop and the SIMD paths its ``__m256`` loop (one accumulator,
    multiply, multiply, add), freed of its restrictions (any n, unaligned rows). Kept to measure
    the thread's "22x faster" claim; use :func:`softmax_vjp` for work.

    Parameters
    ----------
    y : array_like, shape (..., n), float32 or float64
        Softmax output.
    dy : array_like, same shape and dtype as ``y``
        Upstream gradient.
    out : ndarray, optional
        As in :func:`softmax_vjp`.
    isa : {None, "scalar", "avx2", "avx512", "neon"}, optional
        Instruction-set path; ``None`` picks the best of :func:`isas`.
    threads : int >= 1 or None, default 1
        As in :func:`softmax_vjp`; one thread unless asked, because the function exists to be
        timed against :func:`softmax_vjp` on one thread.

    Returns
    -------
    dx : ndarray, shape (..., n), dtype of ``y``
        ``out`` if given.

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax_vjp`.
    """
    return _run(_QUADRATIC, y, dy, out, isa, threads)


def stream_add(a, b, out=None, isa=None, threads=None) -> np.ndarray:
    r"""The bandwidth floor: :math:`c = a + b` elementwise.

    Reads two arrays and writes one, the same three streams of the same size as
    :func:`softmax_vjp`, with the least possible work per element: its time is the memory-bound
    limit a VJP of the same shape can approach. It moves its bytes the way :func:`softmax_vjp`
    does (the output aligned by a masked head; above the same 16 MiB threshold, non-temporal
    stores that skip the read-for-ownership, with software prefetching), so the VJP is compared
    with a floor that uses the same techniques. The elements are split into contiguous blocks over
    ``threads`` threads (any split: there are no rows to keep whole).

    Parameters
    ----------
    a, b : array_like, same shape, float32 or float64
        Operands (at least one dimension).
    out : ndarray, optional
        C-contiguous, writeable array of the same shape and dtype, not overlapping ``a`` or ``b``.
    isa : {None, "scalar", "avx2", "avx512", "neon"}, optional
        ``None`` picks the best of :func:`isas`.
    threads : int >= 1, optional
        At most this many threads (fewer for small calls, see :func:`default_threads`); ``None``
        allows as many as there are usable CPUs.

    Returns
    -------
    c : ndarray, same shape and dtype as ``a``
        ``out`` if given.
    """
    return _run(_ADD, a, b, out, isa, threads)


# ---- the online row reduction and the fused loss -----------------------------------------------

_LSE = {_F32: (_P32, _lib.sg_logsumexp_f32), _F64: (_P64, _lib.sg_logsumexp_f64)}
_CE = {
    _F32: (_P32, _lib.sg_softmax_cross_entropy_f32),
    _F64: (_P64, _lib.sg_softmax_cross_entropy_f64),
}
_I64 = np.dtype(np.int64)
_PI64 = _ffi.typeof("int64_t *")
_NULL = _ffi.NULL


def _row_array(a, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """``a`` (one value per row) as a C-contiguous ``dtype`` array of ``shape``."""
    arr = np.asarray(a)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (one per row), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_row_out(out, shape: tuple, dtype: np.dtype, name: str, inputs: tuple) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    try:
        return _check_out(out, shape, dtype, inputs)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def logsumexp(x, out=None, isa=None, threads=None) -> np.ndarray:
    r"""Log-sum-exp along the last axis, :math:`\operatorname{lse}(x) = \log\sum_j e^{x_j}`.

    The online pass of :func:`softmax`: each row is read once, its state :math:`(m, Z)` merged
    block by block, and :math:`\hat m + \log Z` rounded once from double. ``-inf`` for a row of
    only ``-inf`` (or ``n = 0``), ``+inf`` if a logit is ``+inf``, NaN if one is NaN, as
    :func:`softmax_grad.online_logsumexp`. The bits are the same on every path and for any
    ``threads``.

    Parameters
    ----------
    x : array_like, shape (..., n), float32 or float64
        Logits.
    out : ndarray, shape (...), optional
        C-contiguous, writeable, of ``x``'s dtype, not overlapping ``x``.
    isa, threads
        As in :func:`softmax`.

    Returns
    -------
    lse : ndarray, shape (...) (``x.shape[:-1]``), dtype of ``x``

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax` (float16 and bfloat16 are not taken).
    """
    a = _as_input(x, "x", half=False)
    index = _isa_index(isa)
    shape, n = a.shape[:-1], a.shape[-1]
    rows = a.size // n if n else int(np.prod(shape))
    out = _check_row_out(out, shape, a.dtype, "out", (("x", a),))
    t = _threads(threads, 2 * 4 * a.nbytes, rows)
    ct, fn = _LSE[a.dtype]
    status = fn(_from_buffer(ct, a), _from_buffer(ct, out, True), rows, n, index, t)
    if status:  # pragma: no cover - the checks above make this unreachable
        raise RuntimeError(f"native kernel rejected its arguments (status {status})")
    return out


class CrossEntropy(NamedTuple):
    """What :func:`softmax_cross_entropy` returns: the per-row losses and their gradient."""

    loss: np.ndarray
    dlogits: np.ndarray


def _labels(labels, shape: tuple, n: int, ignore_index: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(
            f"labels must have shape {shape} (one per row of logits), got shape {arr.shape}"
        )
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError("labels must fit in int64")
    lab = np.ascontiguousarray(arr, dtype=_I64)
    bad = (lab != ignore_index) & ((lab < 0) | (lab >= n))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"labels{list(where)} = {int(lab[where])} is not a class: labels must be in "
            f"[0, n) with n = {n} (the last axis of logits), or ignore_index = {ignore_index}; "
            f"{int(bad.sum())} label(s) are outside"
        )
    return lab


def softmax_cross_entropy(
    logits, labels, grad=None, ignore_index=-100, *, isa=None, threads=None
) -> CrossEntropy:
    r"""Per-row cross-entropy of ``softmax(logits)`` and its gradient, fused in one pass.

    For each row :math:`r` with label :math:`k_r`,
    :math:`\ell_r = \operatorname{lse}(x_r) - x_{r,k_r}` and
    :math:`\partial(\sum_r \bar\ell_r \ell_r)/\partial x_r = \bar\ell_r\,(y_r - e_{k_r})`, with
    :math:`\bar\ell_r` = ``grad[r]`` (ones by default): any reduction of the losses is a choice
    of ``grad`` (``1/B`` for a mean). A row whose label is ``ignore_index`` gets loss 0 and
    gradient 0. Each row is read once for its state :math:`(m, Z)` (as :func:`logsumexp`), then
    its gradient written once. The true class is summed apart, :math:`Z = Z' + e_{k_r}`, so that a
    confident row keeps its small loss, :math:`\log(1 + Z'/e_{k_r})`, and its gradient at the
    true class, :math:`-\bar\ell_r Z'/Z`, accurate (chapter 12's concern). NaN and ``+inf``
    logits give a NaN row, as :func:`softmax_grad.softmax_cross_entropy`.

    Parameters
    ----------
    logits : array_like, shape (..., n), float32 or float64
    labels : array_like of int, shape (...)
        Classes in ``[0, n)``, or ``ignore_index``.
    grad : array_like, shape (...), optional
        Upstream gradient of each row's loss, :math:`\bar\ell_r`, cast to ``logits``' dtype;
        ``None`` means ones.
    ignore_index : int, default -100
        The label of rows to leave out (PyTorch's default).
    isa, threads
        As in :func:`softmax`.

    Returns
    -------
    CrossEntropy
        ``loss`` of shape (...) and ``dlogits`` of shape (..., n), both in ``logits``' dtype.

    Raises
    ------
    TypeError
        If ``logits`` is not float32/float64, ``labels`` not integers, ``grad`` not real
        numbers, or ``ignore_index`` not an int.
    ValueError
        If a label is outside ``[0, n)`` and not ``ignore_index`` (the message names the first
        one), a shape does not match, or ``isa``/``threads`` is bad.
    """
    x = _as_input(logits, "logits", half=False)
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(
        ignore_index, (int, np.integer)
    ):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if not np.iinfo(np.int64).min <= ignore_index <= np.iinfo(np.int64).max:
        raise ValueError(f"ignore_index={ignore_index} does not fit in int64")
    ignore_index = int(ignore_index)
    shape, n = x.shape[:-1], x.shape[-1]
    rows = x.size // n if n else int(np.prod(shape))
    lab = _labels(labels, shape, n, ignore_index)
    g = None
    if grad is not None:
        garr = np.asarray(grad)
        if garr.dtype.kind not in "fiu":
            raise TypeError(f"grad must be real numbers, got dtype {garr.dtype}")
        g = _row_array(garr, "grad", shape, x.dtype)
    index = _isa_index(isa)
    t = _threads(threads, 2 * 4 * x.nbytes, rows)
    loss = np.empty(shape, x.dtype)
    dlogits = np.empty(x.shape, x.dtype)
    ct, fn = _CE[x.dtype]
    status = fn(
        _from_buffer(ct, x),
        _from_buffer(_PI64, lab),
        _NULL if g is None else _from_buffer(ct, g),
        _from_buffer(ct, loss, True),
        _from_buffer(ct, dlogits, True),
        rows,
        n,
        ignore_index,
        index,
        t,
    )
    if status:  # pragma: no cover - the checks above make this unreachable
        raise RuntimeError(f"native kernel rejected its arguments (status {status})")
    return CrossEntropy(loss, dlogits)
