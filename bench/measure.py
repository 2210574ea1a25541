r"""Measuring: the string-statement timer, the series, their inputs, and the worker process.

A *series* is one timed thing: an (op, implementation, ISA, threads, variant) on one (shape,
dtype). A *worker* is a process that times the series of one *peer* at one thread count:
``ours-<t>`` (the NumPy formula, the native kernels, ``native.stream_add``, ``np.add`` and the
cffi minimum), ``torch-<t>`` (PyTorch with ``torch.set_num_threads(t)`` and its default
OpenMP settings) or ``jax`` (``jax.jit``-compiled functions of ``jax.nn.softmax`` with XLA's
default threading: JAX has no thread-count setting, so its series record ``threads`` None). So
PyTorch's OpenMP workers, which keep spinning for a while after each call, never share a process
with another peer's series, and each implementation runs the way its own users run it.
:mod:`bench.run` starts the workers and interleaves them; a worker talks JSON lines on
stdin/stdout (``python -m bench.measure <worker>``).

Within a worker, for each (shape, dtype), every series is checked against the NumPy formula and
calibrated: a *sample* is one batch of ``calls`` back-to-back calls (about ``batch_ns``), timed
with :func:`timer` and divided by ``calls``. Rounds take one sample of every series in a fresh
seeded random order; a short call gets untimed calls before each sample, so it starts from its
own cache state.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# Streams over rows*n*itemsize bytes per call: the VJP reads y, dy and writes dx; softmax reads
# x and writes y; the floor reads a, b and writes c.
STREAMS = {"vjp": 3, "softmax": 2, "floor": 3}

# Calls shorter than this get untimed calls before each sample (see Worker.rounds).
WARM_CALL_NS = 5_000_000

# Each turn of a worker starts with untimed rounds for at least this long (see Worker.rounds).
SETTLE_NS = 20_000_000

ALIGN = 64  # every buffer starts on a cache-line boundary, for every implementation alike


def timer(stmt: str, namespace: dict[str, Any]) -> timeit.Timer:
    """The one timer of the harness: ``stmt`` compiled once, run in ``namespace``.

    ``timeit`` compiles the statement into a loop, so a sample of ``calls`` calls costs the
    calls plus one loop step each (a few ns), not a Python function call per call (a lambda adds
    about 30 ns). Time is ``time.perf_counter_ns``; ``Timer.timeit`` turns the garbage
    collector off while it runs.
    """
    return timeit.Timer(stmt, globals=namespace, timer=time.perf_counter_ns)


def sample_ns(t: timeit.Timer, calls: int, warm: int = 0) -> float:
    """Nanoseconds per call over one batch of ``calls`` calls, after ``warm`` untimed ones."""
    if warm:
        t.timeit(warm)
    return t.timeit(calls) / calls


# --------------------------------------------------------------------------------------------
# Machine and versions


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """Hostname, CPU model and identification, clock, core counts, SIMD flags, caches, memory."""
    cpuinfo = _read("/proc/cpuinfo")

    def field_(name):
        m = re.search(rf"^{name}\s*:\s*(.+)$", cpuinfo, re.M)
        return m.group(1).strip() if m else None

    flags = set((field_("flags") or "").split())
    caches = {}
    for idx in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        level, kind, size = (_read(str(idx / f)).strip() for f in ("level", "type", "size"))
        if level and size:
            caches[f"L{level}{'d' if kind == 'Data' else 'i' if kind == 'Instruction' else ''}"] = (
                size
            )
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    mhz = field_("cpu MHz")
    bogomips = field_("bogomips")
    return {
        "hostname": socket.gethostname(),
        "cpu_model": field_("model name") or platform.processor() or "unknown",
        "cpu_vendor": field_("vendor_id"),
        "cpu_family": field_("cpu family"),
        "cpu_model_number": field_("model"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "arch": platform.machine(),
        # The kernel's clock estimates: "cpu MHz" (absent on some VMs) and bogomips, which on
        # x86 Linux is twice the TSC frequency in MHz (the nominal clock).
        "cpu_mhz": float(mhz) if mhz else None,
        "bogomips": float(bogomips) if bogomips else None,
        "flags": {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl")},
        "caches": caches,
        "mem_total_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "os": f"{platform.system()} {platform.release()}",
    }


def _compiler_of(native) -> str | None:
    """The compiler recorded in the native extension's ``.comment`` section, if findable."""
    pkg_dir = Path(native.__file__).resolve().parent
    found: list[str] = []
    for so in sorted(pkg_dir.glob("*.so")) + sorted(pkg_dir.glob("*.pyd")):
        data = so.read_bytes()
        for m in re.finditer(rb"(GCC: \([^)]*\) [0-9][0-9.]*|clang version [0-9][0-9.]*)", data):
            s = m.group(1).decode(errors="replace")
            if s not in found:
                found.append(s)
    return "; ".join(found) or None


def git_info() -> dict[str, Any]:
    """Commit and whether the working tree had changes (the numbers belong to that code)."""

    def run(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    diff = run("diff", "--name-only", "HEAD")  # tracked files changed, staged or not
    # What benchmark runs write (bench/results, the README's targets section) does not make the
    # measured code dirty: make bench runs bench.at_scale right after bench.run has written them.
    changed = None if diff is None else diff.splitlines()
    code = None if changed is None else [p for p in changed if not _benchmark_output(p)]
    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(code) if code is not None else None,
        "changed": changed,
    }


def _benchmark_output(path: str) -> bool:
    return path.startswith("bench/results/") or path == "bench/README.md"


# --------------------------------------------------------------------------------------------
# Series: what gets timed


@dataclass
class Series:
    """One timed thing: an (op, implementation, ISA, threads, variant) on one (shape, dtype)."""

    op: str  # "vjp" | "softmax" | "floor"
    impl: str  # "numpy" | "native" | "torch" | "jax" | "floor" (stream_add) | "cffi-minimum"
    isa: str | None
    threads: int | None  # None: the implementation's own default (native threads=None)
    variant: str  # "out": result written into a pre-allocated buffer; "alloc": a new array
    stmt: str = ""
    ns: dict[str, Any] = field(default_factory=dict, repr=False)
    calls: int = 1
    warm: int = 0  # untimed calls before each sample
    samples_ns: list[float] = field(default_factory=list)
    max_abs_err: float | None = None
    check_ok: bool | None = None

    @property
    def key(self) -> tuple:
        return (self.op, self.impl, self.isa, self.threads, self.variant)

    def label(self, where: str = "") -> str:
        """E.g. ``vjp 256x32000 float32 avx512 t=2`` (``where`` is the shape and dtype)."""
        name = self.isa if self.impl == "native" and self.isa else self.impl
        if self.impl == "native" and self.isa is None:
            name = "native(default)"
        t = "auto" if self.threads is None else str(self.threads)
        alloc = " alloc" if self.variant == "alloc" else ""
        return " ".join(filter(None, (self.op, where, name, f"t={t}"))) + alloc


def worker_names(threads, have_torch: bool, have_jax: bool = False) -> list[str]:
    """One worker per peer and thread count: ``ours-1``, ``ours-2``, ``torch-1``, ..., and one
    ``jax`` worker (XLA's own threading)."""
    names = [f"ours-{t}" for t in threads]
    if have_torch:
        names += [f"torch-{t}" for t in threads]
    if have_jax:
        names.append("jax")
    return names


def parse_worker(name: str) -> tuple[str, int | None]:
    if name == "jax":
        return "jax", None
    family, _, t = name.rpartition("-")
    if family not in ("ours", "torch") or not t.isdigit() or int(t) < 1:
        raise ValueError(f"worker {name!r} is not ours-<threads>, torch-<threads> or jax")
    return family, int(t)


def plan_series(shape, isas, worker: str, dtype: str = "float32") -> list[Series]:
    """The series one worker measures for one (shape, dtype), before any array exists.

    bfloat16 cases time the VJP only (the NumPy library, the native kernels, PyTorch): there is
    no half-precision floor (``native.stream_add`` is float32/float64) and no cffi minimum.
    """
    family, t = parse_worker(worker)
    one_row = shape[0] == 1
    plan: list[Series] = []
    if family == "jax":  # JAX returns new arrays: there is no out= to write into
        if dtype == "bfloat16":  # the bfloat16 cases compare with PyTorch only
            return []
        return [Series(op, "jax", None, None, "alloc") for op in ("vjp", "softmax")]
    if dtype == "bfloat16":
        if family == "torch":
            return [Series("vjp", "torch", None, t, "out")]
        if t == 1:
            plan.append(Series("vjp", "numpy", None, 1, "alloc"))
        return plan + [Series("vjp", "native", isa, t, "out") for isa in isas]
    if family == "torch":
        for op in ("vjp", "softmax"):
            plan.append(Series(op, "torch", None, t, "out"))
            if shape == (1, 10) and t == 1:
                plan.append(Series(op, "torch", None, t, "alloc"))
        plan.append(Series("floor", "torch", None, t, "out"))  # torch.add: a floor candidate
        return plan
    for op in ("vjp", "softmax"):
        if t == 1:
            plan.append(Series(op, "numpy", None, 1, "alloc"))
        for isa in isas:
            plan.append(Series(op, "native", isa, t, "out"))
    if t == 1:
        if one_row:
            # The calls a user makes, default ISA and threads: the validation target compares
            # them with the cffi minimum (see cffi_minimum).
            plan.append(Series("vjp", "native", None, None, "alloc"))
            plan.append(Series("vjp", "native", None, None, "out"))
            plan.append(Series("vjp", "cffi-minimum", None, 1, "alloc"))
            plan.append(Series("vjp", "cffi-minimum", None, 1, "out"))
        if shape == (1, 10):
            plan.append(Series("softmax", "native", None, None, "alloc"))
        plan.append(Series("floor", "numpy", None, 1, "out"))  # np.add: a floor candidate
    plan.append(Series("floor", "floor", None, t, "out"))  # native.stream_add
    return plan


def _dtype(name) -> np.dtype:
    """float32, float64, or bfloat16 (ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def write_result(name: str, command: list[str], body: dict[str, Any], out=None) -> Path:
    """Write a side benchmark's result as JSON: ``body`` after the fields every result records
    (when, the command, the machine, the git state, Python's and NumPy's versions), to ``out``
    or ``bench/results/<name>-<time>.json``; returns the path."""
    import datetime as _dt

    result = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(command),
        "machine": machine_info(),
        "git": git_info(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        **body,
    }
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(out) if out is not None else REPO / "bench" / "results" / f"{name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def aligned_empty(shape, dtype) -> np.ndarray:
    """A C-contiguous array whose data starts on an ``ALIGN``-byte boundary, pages touched."""
    dtype = _dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    a = raw[start : start + nbytes].view(dtype).reshape(shape)
    a.fill(0)  # touch every page now, not inside the first timed call
    return a


def make_inputs(shape, dtype, seed: int = 0) -> dict[str, np.ndarray]:
    """Logits ``x``, probabilities ``y = softmax(x)`` and an upstream gradient ``dy``.

    Every worker builds the same arrays from the same seed.
    """
    import softmax_grad as sg

    rng = np.random.default_rng(seed)
    x = aligned_empty(shape, dtype)
    x[...] = 2.0 * rng.standard_normal(shape)
    y = aligned_empty(shape, dtype)
    y[...] = sg.softmax(x.astype(np.float64))
    dy = aligned_empty(shape, dtype)
    dy[...] = rng.standard_normal(shape)
    return {"x": x, "y": y, "dy": dy}


def cffi_minimum(native, variant: str):
    """``softmax_vjp`` reduced to what any cffi binding must do per call, and nothing else.

    No validation at all: pick the kernel by dtype (one identity test), read the shape once,
    (for ``"alloc"``) allocate the result, turn the three arrays into pointers with
    ``ffi.from_buffer``, call the best kernel on one thread. Its time is a lower bound for a
    cffi-wrapped ``native.softmax_vjp`` on small inputs, which validation can only add to. It
    reads ``softmax_grad.native``'s private ``_ffi``, ``_lib`` and ``_BEST``. Returns
    ``f(y, dy)`` for ``"alloc"``, ``f(y, dy, out=None)`` for ``"out"``: the same signature as
    ``softmax_vjp``, so both are called with the same statement (``f(y, dy, out=out)``).
    """
    ffi, lib, isa = native._ffi, native._lib, native._BEST
    fb, empty, f32 = ffi.from_buffer, np.empty, np.dtype(np.float32)
    k32 = (ffi.typeof("float *"), lib.sg_softmax_vjp_f32)
    k64 = (ffi.typeof("double *"), lib.sg_softmax_vjp_f64)

    def vjp_alloc(y, dy):
        dt, shape = y.dtype, y.shape
        ct, fn = k32 if dt is f32 else k64
        out = empty(shape, dt)
        n = shape[-1]
        fn(fb(ct, y), fb(ct, dy), fb(ct, out), y.size // n, n, isa, 1)
        return out

    def vjp_out(y, dy, out=None):
        ct, fn = k32 if y.dtype is f32 else k64
        n = y.shape[-1]
        fn(fb(ct, y), fb(ct, dy), fb(ct, out), y.size // n, n, isa, 1)
        return out

    return vjp_alloc if variant == "alloc" else vjp_out


def bind(series: list[Series], arrays, native, torch, jax=None) -> None:
    """Give every series its statement and namespace (the same input buffers for all)."""
    import softmax_grad as sg

    x, y, dy = arrays["x"], arrays["y"], arrays["dy"]
    # One output buffer for every op: the floor then moves exactly the VJP's bytes through
    # exactly the VJP's buffers, and no series pays for a cold buffer the others never touch.
    out = aligned_empty(x.shape, x.dtype)
    if torch is not None:
        tx, ty, tdy, tout = (_as_torch(torch, a) for a in (x, y, dy, out))
    if jax is not None:
        jx, jdy = jax.device_put(x), jax.device_put(dy)
        # The VJP as JAX users get it: jax.vjp runs jax.nn.softmax's forward pass once and keeps
        # its residuals; the timed call applies the backward closure (a pytree argument, so the
        # residuals are inputs of the compiled program, not constants baked into it).
        _, jvjp = jax.vjp(jax.nn.softmax, jx)
        japply = jax.jit(lambda vjp, g: vjp(g)[0])
        jsoftmax = jax.jit(jax.nn.softmax)
    for s in series:
        ns: dict[str, Any] = {"out": out, "isa": s.isa, "t": s.threads, "x": x, "y": y, "dy": dy}
        if s.impl == "numpy" and s.op == "floor":
            stmt = "f(y, dy, out=out)"
            ns["f"] = np.add
        elif s.impl == "numpy":
            ns["f"] = sg.softmax_vjp if s.op == "vjp" else sg.softmax
            stmt = "f(y, dy)" if s.op == "vjp" else "f(x)"
        elif s.impl == "native":
            ns["f"] = native.softmax_vjp if s.op == "vjp" else native.softmax
            args = "y, dy" if s.op == "vjp" else "x"
            if s.isa is None:  # the user's call: default ISA and threads
                stmt = f"f({args})" if s.variant == "alloc" else f"f({args}, out=out)"
            else:
                stmt = f"f({args}, out=out, isa=isa, threads=t)"
        elif s.impl == "cffi-minimum":
            ns["f"] = cffi_minimum(native, s.variant)
            stmt = "f(y, dy)" if s.variant == "alloc" else "f(y, dy, out=out)"  # as native
        elif s.impl == "jax":  # compiled by check(), before any timing
            if s.op == "vjp":
                ns.update(f=japply, vjp=jvjp, dy=jdy)
                stmt = "f(vjp, dy).block_until_ready()"
            else:
                ns.update(f=jsoftmax, x=jx)
                stmt = "f(x).block_until_ready()"
        elif s.impl == "torch":
            ns.update(x=tx, y=ty, dy=tdy, out=tout, dt=ty.dtype)
            alloc = s.variant == "alloc"
            if s.op == "vjp":
                ns["f"] = torch._softmax_backward_data  # (grad_output, output, dim, input_dtype)
                stmt = "f(dy, y, -1, dt)" if alloc else "f(dy, y, -1, dt, grad_input=out)"
            elif s.op == "softmax":
                ns["f"] = torch.softmax
                stmt = "f(x, -1)" if alloc else "f(x, -1, out=out)"
            else:
                ns["f"] = torch.add
                stmt = "f(y, dy, out=out)"
        else:  # floor: native.stream_add
            ns["f"] = native.stream_add
            stmt = "f(y, dy, out=out, threads=t)"
        s.stmt, s.ns = stmt, ns


def _as_torch(torch, a: np.ndarray):
    """A tensor on ``a``'s memory (``torch.from_numpy`` does not know ml_dtypes' bfloat16: its
    bits go through int16)."""
    if a.dtype == _dtype("bfloat16"):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def reference(op: str, arrays) -> np.ndarray:
    """What each op must produce, from the NumPy formula in the same dtype."""
    import softmax_grad as sg

    if op == "vjp":
        return sg.softmax_vjp(arrays["y"], arrays["dy"])
    if op == "softmax":
        return sg.softmax(arrays["x"])
    return arrays["y"] + arrays["dy"]


def check(s: Series, ref: np.ndarray) -> None:
    """Run the series once and compare its result with the NumPy formula (a sanity check)."""
    r = eval(s.stmt, s.ns)  # our own statement strings, the same ones that get timed
    if s.variant == "out":
        r = s.ns["out"]
    r = np.asarray(r.float().numpy() if hasattr(r, "numpy") else r)
    import ml_dtypes

    finfo = ml_dtypes.finfo(ref.dtype)
    ref = ref.astype(np.float64)
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    err = float(np.max(np.abs(r.astype(np.float64) - ref))) if ref.size else 0.0
    finite = bool(np.isfinite(err))  # NaN would also make the JSON invalid
    s.max_abs_err = err if finite else None
    # Loose on purpose: this catches a wrong kernel, accuracy is the tests' job.
    tol = 1e4 * float(finfo.eps) * max(scale, 1.0)
    s.check_ok = bool(finite and r.shape == ref.shape and err <= tol)


def case_record(s: Series, shape, dtype: str, worker: str) -> dict[str, Any]:
    """The JSON record of one measured series."""
    rows, n = shape
    nbytes = STREAMS[s.op] * rows * n * _dtype(dtype).itemsize
    med = float(np.median(s.samples_ns))
    mn = float(np.min(s.samples_ns))
    return {
        "op": s.op,
        "shape": [rows, n],
        "dtype": dtype,
        "impl": s.impl,
        "isa": s.isa,
        "threads": s.threads,
        "variant": s.variant,
        "worker": worker,
        "stmt": s.stmt,
        "calls_per_sample": s.calls,
        "warm_calls_per_sample": s.warm,
        "rounds": len(s.samples_ns),
        "median_ns": med,
        "min_ns": mn,
        "bytes": nbytes,
        "gbps": nbytes / med,
        "gbps_best": nbytes / mn,
        "samples_ns": [round(v, 2) for v in s.samples_ns],
        "max_abs_err_vs_numpy": s.max_abs_err,
        "check_ok": s.check_ok,
    }


# --------------------------------------------------------------------------------------------
# The worker: one peer at one thread count, in its own process


class Worker:
    """Times the series of one peer at one thread count; driven by :mod:`bench.run`."""

    def __init__(self, name: str):
        self.name = name
        self.family, self.threads = parse_worker(name)
        import softmax_grad  # the NumPy formula, the reference of every check

        self.sg = softmax_grad
        self.native = self.torch = self.jax = None
        if self.family == "jax":
            import jax  # XLA's default threading

            jax.config.update("jax_enable_x64", True)  # float64 cases in float64
            self.jax = jax
        elif self.family == "torch":
            import torch  # default threading: no OMP_WAIT_POLICY, no KMP_* or GOMP_* settings

            torch.set_num_threads(self.threads)
            self.torch = torch
        else:
            from softmax_grad import native

            self.native = native
        self.series: list[Series] = []
        self.order = np.random.default_rng(12345)

    def hello(self) -> dict[str, Any]:
        """Versions and settings, as this process sees them."""
        out: dict[str, Any] = {
            "worker": self.name,
            "pid": os.getpid(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "numpy": np.__version__,
            "softmax_grad": getattr(self.sg, "__version__", None),
            "env": {
                k: v
                for k, v in os.environ.items()
                if k.startswith(("OMP_", "KMP_", "GOMP_", "XLA_"))
            },
        }
        if self.jax is not None:
            j = self.jax
            out.update(jax=j.__version__, jax_backend=j.default_backend())
        elif self.torch is not None:
            t = self.torch
            out.update(
                torch=t.__version__,
                torch_cpu_capability=t.backends.cpu.get_cpu_capability(),
                torch_threads=t.get_num_threads(),
                torch_parallel_info=t.__config__.parallel_info(),
            )
        else:
            try:
                import cffi

                out["cffi"] = cffi.__version__
            except ImportError:
                out["cffi"] = None
            out["compiler"] = _compiler_of(self.native)
            out["native_isas"] = list(self.native.isas())
        return out

    def prepare(self, shape, dtype: str, batch_ns: float, only=None, calls=None) -> dict:
        """Build inputs, bind, check and calibrate every series of one (shape, dtype).

        ``only``: a list of series keys ``[op, impl, isa, threads, variant]`` to keep, and
        ``calls`` a batch size to use instead of the calibrated one (the control run measures a
        single series alone, in the batches it had in the full run). Returns the cost of one
        round.
        """
        shape = tuple(shape)
        isas = tuple(self.native.isas()) if self.native is not None else ()
        series = plan_series(shape, isas, self.name, dtype)
        if only is not None:
            keep = {tuple(k) for k in only}
            series = [s for s in series if s.key in keep]
        self.shape, self.dtype, self.series = shape, dtype, series
        self.arrays = make_inputs(shape, dtype)
        bind(series, self.arrays, self.native, self.torch, self.jax)
        refs = {op: reference(op, self.arrays) for op in {s.op for s in series}}
        round_ns = 0.0
        for s in series:
            check(s, refs[s.op])
            # The fastest of a few single calls: one slow outlier must not shrink the batch.
            t, spent, one = timer(s.stmt, s.ns), 0, None
            for _ in range(5):
                d = max(t.timeit(1), 1)
                one, spent = d if one is None else min(one, d), spent + d
                if spent > 20_000_000:
                    break
            s.calls = calls or max(1, int(batch_ns // one))
            s.warm = max(1, s.calls // 4) if one < WARM_CALL_NS else 0
            if s.calls > 1:
                t.timeit(s.calls)
            round_ns += one * (s.calls + s.warm)
        return {"series": len(series), "round_ns": round_ns}

    def rounds(self, count: int, deadline_s: float, min_rounds: int) -> dict[str, Any]:
        """``count`` rounds (fewer, but at least ``min_rounds``, once ``deadline_s`` is spent).

        Untimed rounds come first, for at least ``SETTLE_NS``: they put every series back into
        its steady state after whatever ran before this worker was given the cores, and outlast
        the spinning of the previous worker's idle threads (libgomp's default, 300 000 spins,
        about 3 ms and up to 5x that by its own estimate; the native pool's idle workers wait up to
        200 us, mostly yielding their core).
        """
        timers = [timer(s.stmt, s.ns) for s in self.series]
        gc_was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        done = 0
        try:
            settle_until = time.perf_counter_ns() + SETTLE_NS
            while True:
                for s, t in zip(self.series, timers, strict=True):
                    sample_ns(t, s.calls, s.warm)
                if time.perf_counter_ns() >= settle_until:
                    break
            deadline = time.perf_counter() + deadline_s
            for r in range(count):
                if r >= min_rounds and time.perf_counter() > deadline:
                    break
                for i in self.order.permutation(len(self.series)):
                    s = self.series[i]
                    s.samples_ns.append(sample_ns(timers[i], s.calls, s.warm))
                done += 1
        finally:
            if gc_was_enabled:
                gc.enable()
        return {"done": done}

    def finish(self) -> dict[str, Any]:
        """The JSON records of the group's series; frees its arrays."""
        cases = [case_record(s, self.shape, self.dtype, self.name) for s in self.series]
        self.series, self.arrays = [], None
        gc.collect()
        return {"cases": cases}


def worker_main(argv=None) -> int:
    """``python -m bench.measure <worker>``: answer one JSON command per stdin line."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bench.measure ours-<threads>|torch-<threads>|jax", file=sys.stderr)
        return 2
    # The protocol owns fd 1; anything else printed goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr
    worker = Worker(argv[0])
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        if cmd == "quit":
            break
        reply = getattr(worker, cmd)(**msg)
        proto.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
