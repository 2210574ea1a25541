r"""Compiled softmax kernels (scalar C, AVX2+FMA, AVX-512F), chosen at run time.

The C code in ``csrc/`` is compiled into ``softmax_grad._native`` (cffi API mode) when the package
is installed; importing this module never compiles anything. Every function here takes NumPy
arrays whose **last axis** is the softmax axis, with any number of leading axes, in float32 or
float64 (all arrays of one call share the dtype, and so does the result). This layer checks every
argument before a pointer reaches C, copies inputs that are not C-contiguous and aligned, and
never writes outside ``out``.

``isa`` picks the instruction-set path: one of :func:`isas` (``None`` = the best, the last one).
``threads`` is the most POSIX threads that may share the rows (``None`` = the usable CPUs; small
calls use fewer, see :func:`default_threads`); each row is computed by the same code whatever the
split, so results are bitwise identical for any ``threads``.

Examples
--------
>>> import numpy as np
>>> from softmax_grad import native
>>> y = native.softmax(np.array([[0.0, 1.0, 2.0]]))
>>> dx = native.softmax_vjp(y, np.array([[1.0, 0.0, 0.0]]))
"""

from __future__ import annotations

import os

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
    "default_threads",
    "isas",
    "jacobian_product_quadratic",
    "softmax",
    "softmax_vjp",
    "stream_add",
]

_ffi = _native.ffi
_lib = _native.lib

#: Every ISA name this module knows, in the order of the C enum (``SG_ISA_*``): worst to best.
ALL_ISAS = ("scalar", "avx2", "avx512")
_MASK = _lib.sg_available_isas()
_AVAILABLE = tuple(name for bit, name in enumerate(ALL_ISAS) if _MASK >> bit & 1)
_ISA_INDEX = {name: ALL_ISAS.index(name) for name in _AVAILABLE}
_BEST = _ISA_INDEX[_AVAILABLE[-1]]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
# Keyed by itemsize: after validation 4 means float32 and 8 float64, whatever the dtype object.
_ARRAY = {4: _ffi.typeof("float[]"), 8: _ffi.typeof("double[]")}
_VJP = {4: _lib.sg_softmax_vjp_f32, 8: _lib.sg_softmax_vjp_f64}
_SOFTMAX = {4: _lib.sg_softmax_f32, 8: _lib.sg_softmax_f64}
_QUADRATIC = {4: _lib.sg_jacobian_product_quadratic_f32, 8: _lib.sg_jacobian_product_quadratic_f64}
_ADD = {4: _lib.sg_stream_add_f32, 8: _lib.sg_stream_add_f64}
_ndarray = np.ndarray
_from_buffer = _ffi.from_buffer

# Threads are started per call (no pool: no global state), and a second thread costs 25-50 us to
# start and join on the development machine (2-core AMD EPYC Zen 4 VM, shared with other jobs), so
# it pays off only for enough work. Measured by timing softmax_vjp and softmax (float32 and
# float64, rows of 1000 and 4099, median of 200 calls) with 1 thread and with 2 forced threads
# (THREAD_THRESHOLD_BYTES patched to 1) on calls moving 32 KiB to 32 MiB: 2 threads first won at
# 4-16 MiB for the VJP (16 MiB: 1.3-1.9x) and at 2-4 MiB for the forward pass, which spends about
# 4x more time per byte (exp), hence its work factor.
THREAD_THRESHOLD_BYTES = 8 << 20
_SOFTMAX_WORK_FACTOR = 4
try:
    _CPUS = len(os.sched_getaffinity(0))
except AttributeError:  # pragma: no cover - not Linux
    _CPUS = os.cpu_count() or 1


def isas() -> tuple[str, ...]:
    """The instruction-set paths usable on this CPU, ordered worst to best (best last).

    Returns
    -------
    tuple of str
        Always starts with ``"scalar"``; then ``"avx2"`` when the CPU has AVX2 and FMA and the
        OS saves the YMM registers, and ``"avx512"`` when it also has AVX-512F with ZMM state
        enabled (checked with ``cpuid`` and ``xgetbv`` once, in C).
    """
    return _AVAILABLE


def default_threads(nbytes: int, rows: int, threads: int | None = None) -> int:
    """How many threads a call moving ``nbytes`` bytes over ``rows`` rows really uses.

    ``threads`` (default: the usable CPUs) is a maximum: one more thread per
    :data:`THREAD_THRESHOLD_BYTES` of work, and never more threads than rows (a row is never split
    between threads). So small calls run on the calling thread alone, even with ``threads=2``,
    as PyTorch's ``parallel_for`` does with its grain size. For :func:`softmax`, pass 4x its
    bytes: it spends about 4x more time per byte than the VJP.
    """
    limit = _CPUS if threads is None else threads
    return max(1, min(limit, rows, 1 + nbytes // THREAD_THRESHOLD_BYTES))


# ---- validation (the slow path; the public functions try a lean fast path first) ---------------


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


def _threads(threads, nbytes: int, rows: int) -> int:
    if threads is None:
        return default_threads(nbytes, rows)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be None or an int >= 1, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads={threads} is not allowed; use None or an int >= 1")
    return default_threads(nbytes, rows, int(threads))


def _as_input(a, name: str) -> np.ndarray:
    """``a`` as a C-contiguous, aligned, native-endian float32/float64 array (copied if needed)."""
    arr = np.asarray(a)
    dt = arr.dtype
    if dt.kind != "f" or dt.itemsize not in (4, 8):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {dt}")
    if arr.ndim == 0:
        raise ValueError(
            f"{name} must have at least one dimension (the softmax axis is the last one), "
            "got a 0-d array"
        )
    if not dt.isnative:
        return arr.astype(_F32 if dt.itemsize == 4 else _F64, order="C")
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


def _prepare(arrays: tuple, names: tuple, out, isa, threads, work: int):
    """Validate everything; return (arrays, out, rows, n, isa_index, threads).

    ``work`` weighs the bytes of one input for the thread count (streams x cost per byte).
    """
    arrays = tuple(_as_input(a, name) for a, name in zip(arrays, names, strict=True))
    first, first_name = arrays[0], names[0]
    for a, name in zip(arrays[1:], names[1:], strict=True):
        if a.dtype != first.dtype:
            raise TypeError(
                f"{first_name} and {name} must have the same dtype, got {first.dtype} and {a.dtype}"
            )
        if a.shape != first.shape:
            raise ValueError(
                f"{first_name} and {name} must have the same shape, got "
                f"{first_name}.shape={first.shape} and {name}.shape={a.shape}"
            )
    index = _isa_index(isa)
    n = first.shape[-1]
    rows = first.size // n if n else 0
    nthreads = _threads(threads, work * first.nbytes, rows)
    if out is None:
        out = np.empty(first.shape, first.dtype)
    else:
        out = _check_out(out, first.shape, first.dtype, tuple(zip(names, arrays, strict=True)))
    return arrays, out, rows, n, index, nthreads


def _call(fn, *args) -> None:
    status = fn(*args)
    if status:  # pragma: no cover - the checks above make this unreachable
        raise RuntimeError(f"native kernel rejected its arguments (status {status})")


# ---- the fast path -------------------------------------------------------------------------------
# Each public function first recognises the common call -- ndarrays that need no copy, a known
# isa, threads None or an int >= 1, out None or usable -- with a few attribute reads inline
# (flags.carray = C-contiguous, aligned and writeable; a function call costs ~70 ns here, so the
# checks are written out in each function rather than shared). Anything else goes through
# _prepare, which copies what it must and raises the precise error.
# The overlap check of out against each input uses the pointers cffi needs anyway: all arrays in
# the fast path are C-contiguous with the same dtype and size, so they overlap exactly when their
# start addresses are less than `size` elements apart. cffi subtracts two pointers in C,
# (p - q) / itemsize rounded toward zero, so a byte distance that is not a multiple of the
# itemsize still gives |d| < size exactly when the byte ranges overlap. This is what
# np.may_share_memory's bounds test computes for contiguous arrays, at ~70 ns instead of ~230 ns.
# Measured at 1x10 on the development machine (min of 5 x 200k calls): ffi.from_buffer ~135 ns
# per array, np.empty ~100 ns, the cffi call ~200 ns.

_empty = np.empty
# Per dtype, unpacked in one step: (cffi pointer type, kernel, itemsize). from_buffer to a pointer
# type (not "float[]") gives pointers that cffi can subtract directly for the overlap check.
_PTR = {4: _ffi.typeof("float *"), 8: _ffi.typeof("double *")}
_VJP_F32, _VJP_F64 = (_PTR[4], _VJP[4], 4), (_PTR[8], _VJP[8], 8)
_SOFTMAX_F32, _SOFTMAX_F64 = (_PTR[4], _SOFTMAX[4], 4), (_PTR[8], _SOFTMAX[8], 8)
_ADD_F32, _ADD_F64 = (_PTR[4], _ADD[4], 4), (_PTR[8], _ADD[8], 8)


# ---- public functions --------------------------------------------------------------------------


def softmax_vjp(y, dy, out=None, isa=None, threads=None) -> np.ndarray:
    r"""Backward of softmax along the last axis: :math:`dx = y \odot (dy - \langle y, dy\rangle)`.

    For each row, :math:`dx_i = y_i\,(dy_i - \sum_j y_j\,dy_j)`, which is :math:`J^\top dy` with
    :math:`J = \operatorname{diag}(y) - y y^\top`, in O(n) per row and without forming :math:`J`.
    NaN and inf propagate through a row as in the NumPy formula
    :func:`softmax_grad.softmax_vjp`. The result is bitwise the same for any ``threads``; the
    dot product's summation order follows each row's alignment in memory (the kernel starts at a
    vector boundary), so a copy of ``y`` at another address may differ in the last bits, within
    the rounding-error bound :func:`softmax_grad.vjp_error_bound` (which holds for every
    summation order).

    Parameters
    ----------
    y : array_like, shape (..., n), float32 or float64
        Softmax output of the forward pass.
    dy : array_like, same shape and dtype as ``y``
        Upstream gradient :math:`\partial L / \partial y`.
    out : ndarray, optional
        C-contiguous, writeable array of the same shape and dtype, not overlapping ``y`` or
        ``dy``, that receives the result; only its elements are written.
    isa : {None, "scalar", "avx2", "avx512"}, optional
        Instruction-set path; ``None`` picks the best of :func:`isas`.
    threads : int >= 1, optional
        At most this many threads share the rows (fewer for small calls, see
        :func:`default_threads`); ``None`` allows as many as there are usable CPUs.

    Returns
    -------
    dx : ndarray, shape (..., n), dtype of ``y``
        ``out`` if given.

    Raises
    ------
    TypeError
        If a dtype is not float32/float64, the dtypes differ, or ``out`` has another dtype.
    ValueError
        If the shapes differ, ``out`` is unusable, ``isa`` is unknown or unavailable, or
        ``threads < 1``.
    """
    if type(y) is _ndarray and type(dy) is _ndarray and (out is None or type(out) is _ndarray):
        dt = y.dtype
        spec = _VJP_F32 if dt is _F32 else _VJP_F64 if dt is _F64 else None
        shape = y.shape
        index = _BEST if isa is None else _ISA_INDEX.get(isa) if type(isa) is str else None
        if (
            spec is not None
            and dy.dtype is dt
            and shape == dy.shape
            and shape
            and y.flags.carray
            and dy.flags.carray
            and index is not None
            and (threads is None or (type(threads) is int and threads >= 1))
            and (out is None or (out.dtype is dt and out.shape == shape and out.flags.carray))
        ):
            size = y.size
            if not size:
                return _empty(shape, dt) if out is None else out
            ct, fn, k = spec
            if out is None:
                out = _empty(shape, dt)
                po = _from_buffer(ct, out)
                py = _from_buffer(ct, y)
                pdy = _from_buffer(ct, dy)
            else:
                po = _from_buffer(ct, out)
                py = _from_buffer(ct, y)
                pdy = _from_buffer(ct, dy)
                d, e = po - py, po - pdy  # distances in elements (see the fast-path note)
                if -size < d < size or -size < e < size:
                    py = None  # overlap: the slow path raises the precise error
            if py is not None:
                n = shape[-1]
                rows = size // n
                work = 3 * k * size
                if rows > 1 and work >= THREAD_THRESHOLD_BYTES:  # inline default_threads
                    threads = min(threads or _CPUS, rows, 1 + work // THREAD_THRESHOLD_BYTES)
                else:
                    threads = 1
                if fn(py, pdy, po, rows, n, index, threads):
                    raise RuntimeError("native kernel rejected its arguments")  # pragma: no cover
                return out
    (y, dy), out, rows, n, index, threads = _prepare((y, dy), ("y", "dy"), out, isa, threads, 3)
    if rows:
        ct = _ARRAY[y.itemsize]
        _call(
            _VJP[y.itemsize],
            _from_buffer(ct, y),
            _from_buffer(ct, dy),
            _from_buffer(ct, out),
            rows,
            n,
            index,
            threads,
        )
    return out


def softmax(x, out=None, isa=None, threads=None) -> np.ndarray:
    r"""Softmax along the last axis: :math:`y_i = e^{x_i - m} / \sum_j e^{x_j - m}`.

    :math:`m = \max_j x_j` (0 when that is not finite, as in :func:`softmax_grad.softmax`), so no
    exponent overflows. The vectorized exp is accurate to a few float32 ulps (relative error well
    below 3e-6) or a few float64 ulps (below 1e-13), including the argument ``x - m``, which is
    corrected for its rounding error. A ``-inf`` logit gives exactly 0; a row of only ``-inf``,
    or with NaN or ``+inf``, is NaN throughout -- all exactly as the NumPy formula.

    Parameters
    ----------
    x : array_like, shape (..., n), float32 or float64
        Logits.
    out : ndarray, optional
        C-contiguous, writeable array of the same shape and dtype, not overlapping ``x``.
    isa : {None, "scalar", "avx2", "avx512"}, optional
        Instruction-set path; ``None`` picks the best of :func:`isas`.
    threads : int >= 1, optional
        At most this many threads share the rows (fewer for small calls, see
        :func:`default_threads`); ``None`` allows as many as there are usable CPUs.

    Returns
    -------
    y : ndarray, shape (..., n), dtype of ``x``
        ``out`` if given.

    Raises
    ------
    TypeError
        If the dtype is not float32/float64 or ``out`` has another dtype.
    ValueError
        If ``x`` is 0-d, ``out`` is unusable, ``isa`` is unknown or unavailable, or
        ``threads < 1``.
    """
    if type(x) is _ndarray and (out is None or type(out) is _ndarray):
        dt = x.dtype
        spec = _SOFTMAX_F32 if dt is _F32 else _SOFTMAX_F64 if dt is _F64 else None
        shape = x.shape
        index = _BEST if isa is None else _ISA_INDEX.get(isa) if type(isa) is str else None
        if (
            spec is not None
            and shape
            and x.flags.carray
            and index is not None
            and (threads is None or (type(threads) is int and threads >= 1))
            and (out is None or (out.dtype is dt and out.shape == shape and out.flags.carray))
        ):
            size = x.size
            if not size:
                return _empty(shape, dt) if out is None else out
            ct, fn, k = spec
            if out is None:
                out = _empty(shape, dt)
                po = _from_buffer(ct, out)
                px = _from_buffer(ct, x)
            else:
                po = _from_buffer(ct, out)
                px = _from_buffer(ct, x)
                d = po - px  # distance in elements (see the fast-path note)
                if -size < d < size:
                    px = None  # overlap: the slow path raises the precise error
            if px is not None:
                n = shape[-1]
                rows = size // n
                work = 2 * _SOFTMAX_WORK_FACTOR * k * size  # the forward pass's work factor
                if rows > 1 and work >= THREAD_THRESHOLD_BYTES:  # inline default_threads
                    threads = min(threads or _CPUS, rows, 1 + work // THREAD_THRESHOLD_BYTES)
                else:
                    threads = 1
                if fn(px, po, rows, n, index, threads):
                    raise RuntimeError("native kernel rejected its arguments")  # pragma: no cover
                return out
    work = 2 * _SOFTMAX_WORK_FACTOR  # two streams, each byte costing 4x a VJP byte
    (x,), out, rows, n, index, threads = _prepare((x,), ("x",), out, isa, threads, work)
    if rows:
        ct = _ARRAY[x.itemsize]
        _call(
            _SOFTMAX[x.itemsize],
            _from_buffer(ct, x),
            _from_buffer(ct, out),
            rows,
            n,
            index,
            threads,
        )
    return out


def jacobian_product_quadratic(y, dy, isa=None) -> np.ndarray:
    r"""The source thread's O(n²) algorithm for :math:`J^\top dy`, row by row, one thread.

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
    isa : {None, "scalar", "avx2", "avx512"}, optional
        Instruction-set path; ``None`` picks the best of :func:`isas`.

    Returns
    -------
    dx : ndarray, shape (..., n), dtype of ``y``

    Raises
    ------
    TypeError, ValueError
        As :func:`softmax_vjp`.
    """
    (y, dy), out, rows, n, index, _ = _prepare((y, dy), ("y", "dy"), None, isa, 1, 3)
    if rows:
        ct = _ARRAY[y.itemsize]
        fn = _QUADRATIC[y.itemsize]
        _call(
            fn, _from_buffer(ct, y), _from_buffer(ct, dy), _from_buffer(ct, out), rows, n, index, 1
        )
    return out


def stream_add(a, b, out=None, threads=None, isa=None) -> np.ndarray:
    r"""The bandwidth floor: :math:`c = a + b` elementwise.

    Reads two arrays and writes one, the same three streams of the same size as
    :func:`softmax_vjp`, with the least possible work per element: its time is the memory-bound
    limit a VJP of the same shape can approach. It moves its bytes the way :func:`softmax_vjp`
    does (the output aligned by a masked head; above the same 32 MiB threshold, non-temporal
    stores that skip the read-for-ownership, with software prefetching), so the VJP is compared
    with a floor that uses the same techniques. The elements are split into contiguous blocks over
    ``threads`` threads (any split: there are no rows to keep whole).

    Parameters
    ----------
    a, b : array_like, same shape, float32 or float64
        Operands (at least one dimension).
    out : ndarray, optional
        C-contiguous, writeable array of the same shape and dtype, not overlapping ``a`` or ``b``.
    threads : int >= 1, optional
        At most this many threads (fewer for small calls, see :func:`default_threads`); ``None``
        allows as many as there are usable CPUs.
    isa : {None, "scalar", "avx2", "avx512"}, optional
        ``None`` picks the best of :func:`isas`.

    Returns
    -------
    c : ndarray, same shape and dtype as ``a``
    """
    if type(a) is _ndarray and type(b) is _ndarray and (out is None or type(out) is _ndarray):
        dt = a.dtype
        spec = _ADD_F32 if dt is _F32 else _ADD_F64 if dt is _F64 else None
        shape = a.shape
        index = _BEST if isa is None else _ISA_INDEX.get(isa) if type(isa) is str else None
        if (
            spec is not None
            and b.dtype is dt
            and shape == b.shape
            and shape
            and a.flags.carray
            and b.flags.carray
            and index is not None
            and (threads is None or (type(threads) is int and threads >= 1))
            and (out is None or (out.dtype is dt and out.shape == shape and out.flags.carray))
        ):
            size = a.size
            if not size:
                return _empty(shape, dt) if out is None else out
            ct, fn, k = spec
            if out is None:
                out = _empty(shape, dt)
                po = _from_buffer(ct, out)
                pa = _from_buffer(ct, a)
                pb = _from_buffer(ct, b)
            else:
                po = _from_buffer(ct, out)
                pa = _from_buffer(ct, a)
                pb = _from_buffer(ct, b)
                d, e = po - pa, po - pb  # distances in elements (see the fast-path note)
                if -size < d < size or -size < e < size:
                    pa = None  # overlap: the slow path raises the precise error
            if pa is not None:
                work = 3 * k * size  # no rows to keep whole: only the size limits the threads
                if work >= THREAD_THRESHOLD_BYTES:
                    threads = min(threads or _CPUS, 1 + work // THREAD_THRESHOLD_BYTES)
                else:
                    threads = 1
                if fn(pa, pb, po, size, index, threads):
                    raise RuntimeError("native kernel rejected its arguments")  # pragma: no cover
                return out
    (a, b), out, _, _, index, _ = _prepare((a, b), ("a", "b"), out, isa, threads, 3)
    size = a.size
    threads = default_threads(3 * size * a.itemsize, size, threads)
    if size:
        ct = _ARRAY[a.itemsize]
        _call(
            _ADD[a.itemsize], _from_buffer(ct, a), _from_buffer(ct, b), _from_buffer(ct, out), size,
            index, threads,
        )  # fmt: skip
    return out
