#!/usr/bin/env python
r"""Benchmark the softmax VJP and forward softmax: NumPy formula, native kernels, PyTorch CPU.

Every implementation is timed side by side in one run, on the same input buffers, against a
3-stream bandwidth floor (the fastest ``c = a + b`` over the same bytes with at most as many
threads: :func:`softmax_grad.native.stream_add` or NumPy's ``np.add``, see ``floor_case``). One
JSON file per run goes to ``bench/results/`` (``<date>-<time>-<host>.json``, copied to
``bench/results/latest.json`` for the book); a table with ratios and the issue's targets
(PASS/FAIL with the numbers) is printed.

Method
------
For each (shape, dtype) every series -- one (op, implementation, ISA, threads, variant) -- is
warmed up, checked against the NumPy formula, and calibrated: a *sample* is one batch of
``calls`` back-to-back calls (enough for about 2 ms), timed with ``time.perf_counter_ns`` and
divided by ``calls``. Then ``rounds`` rounds run; each round takes one sample of every series, in
a fresh random (seeded) order, so slow drifts of the machine hit all series alike; a short call
gets untimed calls before each sample, so it starts from its own cache state. The reported
statistic is the median over rounds (the minimum is stored too). Rounds are budgeted by the
cost of one round, so a full run stays within a few minutes.

Bytes moved per call (``rows`` x ``n`` elements of ``itemsize`` bytes each): the VJP reads ``y``
and ``dy`` and writes ``dx`` (3 streams); softmax reads ``x`` and writes ``y`` (2 streams); the
floor reads ``a`` and ``b`` and writes ``c`` (3 streams). GB/s = bytes / median time (1 GB =
1e9 bytes). Shapes whose arrays fit in the last-level cache stream from cache, for every
implementation alike.

Usage::

    python bench/run.py                 # full run, about 4 minutes on 2 cores
    python bench/run.py --quick         # a smoke run: few shapes, few rounds
    python bench/run.py --out /tmp/r.json --shapes 1x10,64x1000 --no-torch
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
SCHEMA_VERSION = 1

FULL_SHAPES = ((1, 10), (1, 1000), (64, 10), (64, 1000), (1024, 1024), (256, 32000), (4096, 4096))
QUICK_SHAPES = ((1, 10), (64, 10), (1024, 1024))
DTYPES = ("float32", "float64")
THREADS = (1, 2)

# Streams over rows*n*itemsize bytes per call; see the module docstring.
STREAMS = {"vjp": 3, "softmax": 2, "floor": 3}


# Time budgets. A "group" is one (shape, dtype): all of its series run interleaved.
FULL = {"batch_ns": 2_000_000, "group_budget_s": 16.0, "min_rounds": 5, "max_rounds": 101}
QUICK = {"batch_ns": 200_000, "group_budget_s": 0.25, "min_rounds": 3, "max_rounds": 5}

# After a 2-thread PyTorch sample its OpenMP workers keep spinning for a while; a short pause
# keeps that spinning off the core the next series wants.
TORCH_COOLDOWN_S = 0.005

# Calls shorter than this get untimed calls before each sample (see time_group).
WARM_CALL_NS = 5_000_000

ALIGN = 64  # every buffer starts on a cache-line boundary, for every implementation alike


# --------------------------------------------------------------------------------------------
# Machine and versions


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """Hostname, CPU model, core counts, SIMD flags, caches, memory, kernel."""
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    flags_m = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
    flags = set(flags_m.group(1).split()) if flags_m else set()
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
    return {
        "hostname": socket.gethostname(),
        "cpu_model": model.group(1).strip() if model else platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "arch": platform.machine(),
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


def versions(native, torch) -> dict[str, Any]:
    """Versions of Python, NumPy, PyTorch, softmax_grad, cffi and the C compiler."""
    import softmax_grad

    try:
        import cffi

        cffi_version = cffi.__version__
    except ImportError:
        cffi_version = None
    out = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "numpy": np.__version__,
        "torch": None,
        "softmax_grad": getattr(softmax_grad, "__version__", None),
        "cffi": cffi_version,
        "compiler": _compiler_of(native),
        "native_isas": list(native.isas()),
    }
    if torch is not None:
        out["torch"] = torch.__version__
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_default_threads"] = torch.get_num_threads()
    return out


def git_info() -> dict[str, Any]:
    """Commit and whether the working tree had changes (the numbers belong to that code)."""

    def run(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


# --------------------------------------------------------------------------------------------
# Series: what gets timed


@dataclass
class Series:
    """One timed thing: an (op, implementation, ISA, threads, variant) on one (shape, dtype)."""

    op: str  # "vjp" | "softmax" | "floor"
    impl: str  # "numpy" | "native" | "torch" | "floor"
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

    def label(self, where: str = "") -> str:
        """E.g. ``vjp 256x32000 float32 avx512 t=2`` (``where`` is the shape and dtype)."""
        name = self.isa if self.impl == "native" and self.isa else self.impl
        if self.impl == "native" and self.isa is None:
            name = "native(default)"
        t = "auto" if self.threads is None else str(self.threads)
        alloc = " alloc" if self.variant == "alloc" else ""
        return " ".join(filter(None, (self.op, where, name, f"t={t}"))) + alloc


def plan_series(shape, isas, threads, have_torch: bool) -> list[Series]:
    """The series measured for one (shape, dtype), before any array exists."""
    plan: list[Series] = []
    for op in ("vjp", "softmax"):
        plan.append(Series(op, "numpy", None, 1, "alloc"))
        for t in threads:
            for isa in isas:
                plan.append(Series(op, "native", isa, t, "out"))
            if have_torch:
                plan.append(Series(op, "torch", None, t, "out"))
        if shape == (1, 10):
            # The whole call a user makes: default ISA and threads, a new output array.
            plan.append(Series(op, "native", None, None, "alloc"))
            if have_torch:
                plan.append(Series(op, "torch", None, 1, "alloc"))
    if shape[0] == 1:
        # What any cffi binding pays per call before validating anything (see _cffi_minimum).
        plan.append(Series("vjp", "cffi-minimum", None, 1, "alloc"))
        plan.append(Series("vjp", "cffi-minimum", None, 1, "out"))
    for t in threads:
        plan.append(Series("floor", "floor", None, t, "out"))
    # NumPy's own c = a + b (one thread): a candidate for the floor (see floor_case), and so a
    # check from outside that the native floor is a real one.
    plan.append(Series("floor", "numpy", None, 1, "out"))
    return plan


def aligned_empty(shape, dtype) -> np.ndarray:
    """A C-contiguous array whose data starts on an ``ALIGN``-byte boundary, pages touched."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    a = raw[start : start + nbytes].view(dtype).reshape(shape)
    a.fill(0)  # touch every page now, not inside the first timed call
    return a


def make_inputs(shape, dtype, seed: int = 0) -> dict[str, np.ndarray]:
    """Logits ``x``, probabilities ``y = softmax(x)`` and an upstream gradient ``dy``."""
    import softmax_grad as sg

    rng = np.random.default_rng(seed)
    x = aligned_empty(shape, dtype)
    x[...] = 2.0 * rng.standard_normal(shape)
    y = aligned_empty(shape, dtype)
    y[...] = sg.softmax(x.astype(np.float64))
    dy = aligned_empty(shape, dtype)
    dy[...] = rng.standard_normal(shape)
    return {"x": x, "y": y, "dy": dy}


def _cffi_minimum(native, variant: str):
    """``softmax_vjp`` reduced to what any cffi binding must do per call, and nothing else.

    No validation at all: (for ``"alloc"``) allocate the result, turn the three arrays into
    pointers with ``ffi.from_buffer``, call the best kernel on one thread. Its time is a lower
    bound for a cffi-wrapped ``native.softmax_vjp`` on small inputs, which validation can only
    add to. It reads ``softmax_grad.native``'s private ``_ffi``, ``_lib`` and ``_BEST``.
    """
    ffi, lib, isa = native._ffi, native._lib, native._BEST
    fb, empty = ffi.from_buffer, np.empty
    kernel = {
        4: (ffi.typeof("float *"), lib.sg_softmax_vjp_f32),
        8: (ffi.typeof("double *"), lib.sg_softmax_vjp_f64),
    }

    def vjp_alloc(y, dy):
        ct, fn = kernel[y.itemsize]
        out = empty(y.shape, y.dtype)
        n = y.shape[-1]
        fn(fb(ct, y), fb(ct, dy), fb(ct, out), y.size // n, n, isa, 1)
        return out

    def vjp_out(y, dy, out):
        ct, fn = kernel[y.itemsize]
        n = y.shape[-1]
        fn(fb(ct, y), fb(ct, dy), fb(ct, out), y.size // n, n, isa, 1)
        return out

    return vjp_alloc if variant == "alloc" else vjp_out


def bind(series: list[Series], arrays, native, torch) -> dict[str, np.ndarray]:
    """Give every series its statement and namespace; returns the output buffer per op."""
    import softmax_grad as sg

    x, y, dy = arrays["x"], arrays["y"], arrays["dy"]
    # One output buffer for every op: the floor then moves exactly the VJP's bytes through
    # exactly the VJP's buffers, and no series pays for a cold buffer the others never touch.
    shared = aligned_empty(x.shape, x.dtype)
    outs = dict.fromkeys(STREAMS, shared)
    if torch is not None:
        tx, ty, tdy = (torch.from_numpy(a) for a in (x, y, dy))
        touts = {op: torch.from_numpy(o) for op, o in outs.items()}
    for s in series:
        ns: dict[str, Any] = {"out": outs[s.op], "isa": s.isa, "t": s.threads}
        if s.impl == "numpy" and s.op == "floor":
            stmt = "f(y, dy, out=out)"
            ns.update(f=np.add, y=y, dy=dy)
        elif s.impl == "numpy":
            fn = sg.softmax_vjp if s.op == "vjp" else sg.softmax
            stmt = "f(y, dy)" if s.op == "vjp" else "f(x)"
            ns.update(f=fn, x=x, y=y, dy=dy)
        elif s.impl == "native":
            fn = native.softmax_vjp if s.op == "vjp" else native.softmax
            args = "y, dy" if s.op == "vjp" else "x"
            stmt = (
                f"f({args})" if s.variant == "alloc" else f"f({args}, out=out, isa=isa, threads=t)"
            )
            ns.update(f=fn, x=x, y=y, dy=dy)
        elif s.impl == "cffi-minimum":
            ns.update(f=_cffi_minimum(native, s.variant), y=y, dy=dy)
            stmt = "f(y, dy)" if s.variant == "alloc" else "f(y, dy, out)"
        elif s.impl == "torch":
            ns.update(x=tx, y=ty, dy=tdy, out=touts[s.op], dt=ty.dtype)
            if s.op == "vjp":
                fn = torch._softmax_backward_data  # (grad_output, output, dim, input_dtype)
                alloc = s.variant == "alloc"
                stmt = "f(dy, y, -1, dt)" if alloc else "f(dy, y, -1, dt, grad_input=out)"
            else:
                fn = torch.softmax
                stmt = "f(x, -1)" if s.variant == "alloc" else "f(x, -1, out=out)"
            ns["f"] = fn
        else:  # floor
            ns.update(f=native.stream_add, y=y, dy=dy)
            stmt = "f(y, dy, out=out, threads=t)"
        s.stmt, s.ns = stmt, ns
    return outs


def reference(op: str, arrays) -> np.ndarray:
    """What each op must produce, from the NumPy formula in the same dtype."""
    import softmax_grad as sg

    if op == "vjp":
        return sg.softmax_vjp(arrays["y"], arrays["dy"])
    if op == "softmax":
        return sg.softmax(arrays["x"])
    return arrays["y"] + arrays["dy"]


# --------------------------------------------------------------------------------------------
# Timing


class Progress:
    """One progress line on stderr: rewritten in place on a terminal, one line per step if not."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.tty = sys.stderr.isatty()
        self.t0 = self.last = time.perf_counter()

    def step(self, text: str, count: bool = True) -> None:
        """Report ``text``; ``count=False`` for an update within a step (rate-limited in logs)."""
        if count:
            self.done += 1
        if not self.enabled:
            return
        now = time.perf_counter()
        if not count and not self.tty and now - self.last < 5.0:
            return  # a log file gets a round update at most every 5 s
        self.last = now
        elapsed = now - self.t0
        line = f"[{self.done}/{self.total}] {text}  ({elapsed:.0f} s)"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _timer(s: Series) -> timeit.Timer:
    return timeit.Timer(s.stmt, globals=s.ns, timer=time.perf_counter_ns)


def _before(s: Series, torch) -> None:
    if s.impl == "torch":
        torch.set_num_threads(s.threads)


def _after(s: Series) -> None:
    if s.impl == "torch" and (s.threads or 1) > 1:
        time.sleep(TORCH_COOLDOWN_S)


def check(s: Series, ref: np.ndarray) -> None:
    """Run the series once and compare its result with the NumPy formula (a sanity check)."""
    r = eval(s.stmt, s.ns)  # our own statement strings, the same ones that get timed
    if s.variant == "out":
        r = s.ns["out"]
    r = np.asarray(r.numpy() if hasattr(r, "numpy") else r)
    finfo = np.finfo(ref.dtype)
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    err = float(np.max(np.abs(r.astype(np.float64) - ref))) if ref.size else 0.0
    finite = bool(np.isfinite(err))  # NaN would also make the JSON invalid
    s.max_abs_err = err if finite else None
    # Loose on purpose: this catches a wrong kernel, accuracy is the tests' job.
    tol = 1e4 * float(finfo.eps) * max(scale, 1.0)
    s.check_ok = bool(finite and r.shape == ref.shape and err <= tol)


def time_group(series, ref_by_op, cfg, progress: Progress, head: str, torch) -> int:
    """Warm up, check, calibrate and then time every series in interleaved rounds.

    Each sample is preceded by untimed calls (a quarter of a batch, at least one) when a call is
    short (< ``WARM_CALL_NS``): the previous series leaves its own data, and dirty lines of
    NumPy's temporaries, in the caches, and without them whoever comes next pays for evicting
    them. Each round visits the
    series in a fresh random order (seeded), so no series always follows the same neighbour.
    """
    round_ns = 0.0
    for s in series:
        progress.step(s.label(head))
        _before(s, torch)
        check(s, ref_by_op[s.op])
        # The fastest of a few single calls: one slow outlier must not shrink the batch.
        timer, spent, one = _timer(s), 0, None
        for _ in range(5):
            t = max(timer.timeit(1), 1)
            one, spent = t if one is None else min(one, t), spent + t
            if spent > 20_000_000:
                break
        s.calls = max(1, int(cfg["batch_ns"] // one))
        s.warm = max(1, s.calls // 4) if one < WARM_CALL_NS else 0
        if s.calls > 1:
            timer.timeit(s.calls)
        _after(s)
        round_ns += one * (s.calls + s.warm)
    rounds = int(cfg["group_budget_s"] * 1e9 // max(round_ns, 1))
    rounds = max(cfg["min_rounds"], min(cfg["max_rounds"], rounds))
    order = np.random.default_rng(12345)
    # The round cost was estimated from the fastest calls; on a busy machine multi-threaded
    # calls can be far slower, so stop early (after min_rounds) once the budget is well past.
    deadline = time.perf_counter() + 1.5 * cfg["group_budget_s"]
    done = 0
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            if r >= cfg["min_rounds"] and time.perf_counter() > deadline:
                break
            progress.step(f"{head}: round {r + 1}/{rounds} of {len(series)} series", count=False)
            for i in order.permutation(len(series)):
                s = series[i]
                _before(s, torch)
                timer = _timer(s)
                if s.warm:
                    timer.timeit(s.warm)
                s.samples_ns.append(timer.timeit(s.calls) / s.calls)
                _after(s)
            done += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return done


def case_record(s: Series, shape, dtype: str, rounds: int) -> dict[str, Any]:
    """The JSON record of one measured series."""
    rows, n = shape
    nbytes = STREAMS[s.op] * rows * n * np.dtype(dtype).itemsize
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
        "calls_per_sample": s.calls,
        "warm_calls_per_sample": s.warm,
        "rounds": rounds,
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
# Analysis: table and targets


def best_isa(isas) -> str:
    """The ISA ``isa=None`` dispatches to: ``native.isas()`` is ordered worst to best."""
    return isas[-1]


class Index:
    """Look up a case's median by (op, impl, isa, shape, dtype, threads, variant)."""

    def __init__(self, cases):
        self.d = {
            (
                c["op"],
                c["impl"],
                c["isa"],
                tuple(c["shape"]),
                c["dtype"],
                c["threads"],
                c["variant"],
            ): c
            for c in cases
        }

    def get(self, op, impl, shape, dtype, threads, isa=None, variant="out"):
        c = self.d.get((op, impl, isa, tuple(shape), dtype, threads, variant))
        return c["median_ns"] if c else None

    def case(self, op, impl, shape, dtype, threads, isa=None, variant="out"):
        return self.d.get((op, impl, isa, tuple(shape), dtype, threads, variant))


def _ratio(a, b):
    return None if a is None or b is None else a / b


def floor_case(ix: Index, shape, dtype, threads):
    """The fastest ``c = a + b`` measured with at most ``threads`` threads: the floor.

    ``native.stream_add`` at 1..``threads`` threads and NumPy's ``np.add`` (1 thread) all move
    the VJP's bytes; whichever is fastest is the best that is known to be possible, so the VJP
    is held to that one (a weak floor would flatter it).
    """
    found = [ix.case("floor", "floor", shape, dtype, t) for t in range(1, (threads or 1) + 1)]
    found.append(ix.case("floor", "numpy", shape, dtype, 1))
    found = [c for c in found if c is not None]
    return min(found, key=lambda c: c["median_ns"]) if found else None


def evaluate_targets(cases, isas, shapes, dtypes, threads, have_torch: bool) -> list[dict]:
    """The issue's performance targets, each PASS/FAIL/N/A with the numbers behind it.

    A check's ``value`` comes from medians (it decides PASS/FAIL); ``value_from_min`` is the
    same ratio from the minima, a hint of what a quiet machine gives. Ratios are the other
    series' time over the native time: for the floor that is the native VJP's share of the
    floor's bandwidth (same bytes), for PyTorch and NumPy a speed-up. "native" is the ISA
    ``isa=None`` dispatches to; a target whose cases were not all measured is N/A.
    """
    ix = Index(cases)
    nat = best_isa(isas)
    targets = []

    def target(tid, text, checks):
        decided = [c["pass"] for c in checks if c["pass"] is not None]
        if not checks or len(decided) < len(checks):
            status = "N/A"
        else:
            status = "PASS" if all(decided) else "FAIL"
        targets.append({"id": tid, "text": text, "status": status, "checks": checks})

    def row(shape, dtype, t, value, vmin, threshold, unit, ok):
        return {
            "shape": list(shape),
            "dtype": dtype,
            "threads": t,
            "value": value,
            "value_from_min": vmin,
            "threshold": threshold,
            "unit": unit,
            "pass": ok,
        }

    def check(shape, dtype, t, other, mine, threshold):
        """Speed-up ``other`` time / ``mine`` time >= ``threshold`` (cases may be missing)."""
        if other is None or mine is None:
            return row(shape, dtype, t, None, None, threshold, "x", None)
        value = other["median_ns"] / mine["median_ns"]
        vmin = other["min_ns"] / mine["min_ns"]
        return row(shape, dtype, t, value, vmin, threshold, "x", value >= threshold)

    def check_time(shape, dtype, t, mine, limit_ns):
        """Time per call <= ``limit_ns``."""
        if mine is None:
            return row(shape, dtype, t, None, None, limit_ns, "ns", None)
        value = mine["median_ns"]
        return row(shape, dtype, t, value, mine["min_ns"], limit_ns, "ns", value <= limit_ns)

    def vjp(s, d, t):
        return ix.case("vjp", "native", s, d, t, nat)

    big = [s for s in shapes if s[0] * s[1] >= 64 * 1000]
    grid = [(s, d, t) for s in shapes for d in dtypes for t in threads]
    target(
        "vjp_vs_floor",
        f"native VJP ({nat}) >= 0.9x the 3-stream floor (the fastest c = a + b measured with "
        "at most as many threads) at every shape >= 64x1000, both dtypes, 1 and 2 threads",
        [
            check(s, d, t, floor_case(ix, s, d, t), vjp(s, d, t), 0.9)
            for s, d, t in grid
            if s in big
        ],
    )
    if have_torch:
        target(
            "vjp_vs_torch",
            f"native VJP ({nat}) never slower than torch._softmax_backward_data at any shape, "
            "dtype and thread count (both write into a pre-allocated output)",
            [
                check(s, d, t, ix.case("vjp", "torch", s, d, t), vjp(s, d, t), 1.0)
                for s, d, t in grid
            ],
        )
        target(
            "vjp_vs_torch_64x10",
            f"native VJP ({nat}) >= 1.5x faster than torch at 64x10",
            [
                check(
                    (64, 10),
                    d,
                    t,
                    ix.case("vjp", "torch", (64, 10), d, t),
                    vjp((64, 10), d, t),
                    1.5,
                )
                for d in dtypes
                for t in threads
            ],
        )
    target(
        "whole_call_1x10",
        "whole-call cost of native.softmax_vjp(y, dy) at 1x10 (validation, dispatch and "
        "allocating the result included) <= 1 us",
        [
            check_time(
                (1, 10), d, None, ix.case("vjp", "native", (1, 10), d, None, None, "alloc"), 1000.0
            )
            for d in dtypes
        ],
    )
    s1024 = (1024, 1024)
    target(
        "vjp_vs_numpy_1024",
        f"native VJP ({nat}, 1 thread) >= 5x faster than the NumPy formula at 1024x1024",
        [
            check(
                s1024,
                d,
                1,
                ix.case("vjp", "numpy", s1024, d, 1, None, "alloc"),
                vjp(s1024, d, 1),
                5.0,
            )
            for d in dtypes
        ],
    )
    if have_torch:
        target(
            "softmax_vs_torch_1024",
            f"native softmax ({nat}) at least as fast as torch.softmax at 1024x1024 float32, "
            "1 and 2 threads",
            [
                check(
                    s1024,
                    "float32",
                    t,
                    ix.case("softmax", "torch", s1024, "float32", t),
                    ix.case("softmax", "native", s1024, "float32", t, nat),
                    1.0,
                )
                for t in threads
            ],
        )
    return targets


def _us(ns):
    if ns is None:
        return "-"
    us = ns / 1000
    return f"{us:.3f}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def _x(r):
    return "-" if r is None else f"{r:.2f}"


def format_table(result) -> str:
    """Median microseconds per call for every implementation, with the ratios."""
    cases = result["cases"]
    ix = Index(cases)
    isas = result["versions"]["native_isas"]
    nat = best_isa(isas)
    have_torch = result["versions"]["torch"] is not None
    shapes = [tuple(s) for s in result["config"]["shapes"]]
    lines = []
    cols = ["numpy", *isas] + (["torch"] if have_torch else []) + ["floor", "np.add"]
    for op in ("vjp", "softmax"):
        head = (
            f"{op:7s} {'shape':>11s} {'dtype':7s} t | "
            + " ".join(f"{c:>8s}" for c in cols)
            + f" | {'GB/s':>6s} {'xfloor':>6s}"
            + (f" {'xtorch':>6s}" if have_torch else "")
            + f" {'xnumpy':>6s}"
        )
        lines.append(
            f"{op}: median us per call (numpy: 1 thread, allocating; others write into "
            f"out; floor = native.stream_add, np.add = NumPy's c = a + b, 1 thread); "
            f"ratios for native = {nat}; xfloor against the faster of floor and np.add"
        )
        lines.append(head)
        lines.append("-" * len(head))
        for s in shapes:
            for d in result["config"]["dtypes"]:
                for t in result["config"]["threads"]:
                    row = [ix.get(op, "numpy", s, d, 1, None, "alloc")]
                    row += [ix.get(op, "native", s, d, t, isa) for isa in isas]
                    if have_torch:
                        row.append(ix.get(op, "torch", s, d, t))
                    row.append(ix.get("floor", "floor", s, d, t))
                    row.append(ix.get("floor", "numpy", s, d, 1))
                    c = ix.case(op, "native", s, d, t, nat)
                    fc = floor_case(ix, s, d, t)
                    gbps = c["gbps"] if c else None
                    xfloor = _ratio(gbps, fc["gbps"] if fc else None)
                    line = (
                        f"{op:7s} {f'{s[0]}x{s[1]}':>11s} {d:7s} {t} | "
                        + " ".join(f"{_us(v):>8s}" for v in row)
                        + f" | {'-' if gbps is None else f'{gbps:.1f}':>6s} {_x(xfloor):>6s}"
                    )
                    med = c["median_ns"] if c else None
                    if have_torch:
                        line += f" {_x(_ratio(ix.get(op, 'torch', s, d, t), med)):>6s}"
                    line += f" {_x(_ratio(row[0], med)):>6s}"
                    lines.append(line)
        lines.append("")
    alloc = [
        c for c in cases if c["variant"] == "alloc" and c["impl"] not in ("numpy", "cffi-minimum")
    ]
    if alloc:
        lines.append("1x10 allocating calls (whole call: validation, dispatch, new result array):")
        for c in alloc:
            name = "native.softmax_vjp(y, dy)" if c["op"] == "vjp" else "native.softmax(x)"
            if c["impl"] == "torch":
                name = (
                    "torch._softmax_backward_data(dy, y, -1, dtype)"
                    if c["op"] == "vjp"
                    else "torch.softmax(x, -1)"
                )
            lines.append(
                f"  {name:48s} {c['dtype']:7s} median {c['median_ns']:8.0f} ns, "
                f"min {c['min_ns']:8.0f} ns"
            )
        lines.append("")
    bare = [c for c in cases if c["impl"] == "cffi-minimum"]
    if bare:
        lines.append(
            "cffi minimum (from_buffer x3 + the kernel call, no validation; 'alloc' also "
            "allocates the result) next to the native and torch VJP at the same shape:"
        )
        for c in bare:
            s, d, v = c["shape"], c["dtype"], c["variant"]
            if v == "alloc":
                nat_ns = ix.get("vjp", "native", s, d, None, None, "alloc")
                torch_ns = ix.get("vjp", "torch", s, d, 1, None, "alloc")
            else:
                nat_ns = ix.get("vjp", "native", s, d, 1, nat)
                torch_ns = ix.get("vjp", "torch", s, d, 1)
            lines.append(
                f"  {s[0]}x{s[1]} {d:7s} {v:5s}: cffi minimum {c['median_ns']:6.0f} ns, "
                f"native {'-' if nat_ns is None else f'{nat_ns:.0f}'} ns, "
                f"torch {'-' if torch_ns is None else f'{torch_ns:.0f}'} ns"
            )
        lines.append("")
    bad = [c for c in cases if c["check_ok"] is False]
    for c in bad:
        lines.append(
            f"WARNING: {c['op']} {c['impl']} {c['isa']} {c['shape']} {c['dtype']} t={c['threads']}"
            f" differs from the NumPy formula (max abs error {c['max_abs_err_vs_numpy']})"
        )
    return "\n".join(lines)


def format_targets(targets) -> str:
    """One line per target, then one line per check."""
    lines = [
        "targets (decided on medians; speed-up = other time / native time; the ratio of the "
        "minima is shown as a hint of a quieter machine):"
    ]
    for t in targets:
        lines.append(f"  [{t['status']:4s}] {t['text']}")
        for c in t["checks"]:
            v = c["value"]
            if v is None:
                shown = "not measured"
            elif c["unit"] == "ns":
                shown = f"{v:.0f} ns (<= {c['threshold']:.0f}; min {c['value_from_min']:.0f} ns)"
            else:
                shown = f"{v:.2f}x (>= {c['threshold']}x; from minima {c['value_from_min']:.2f}x)"
            mark = "ok  " if c["pass"] else "----" if c["pass"] is None else "FAIL"
            t_ = "auto" if c["threads"] is None else c["threads"]
            lines.append(
                f"      {mark} {c['shape'][0]}x{c['shape'][1]} {c['dtype']} t={t_}: {shown}"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Driver


def to_json(result) -> str:
    """Indented JSON with every list of plain numbers on one line (samples stay compact)."""
    text = json.dumps(result, indent=1)
    return (
        re.sub(
            r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
        )
        + "\n"
    )


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """``"1x10,64x1000"`` -> ``((1, 10), (64, 1000))``."""
    shapes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", part)
        if not m:
            raise argparse.ArgumentTypeError(f"shape {part!r} is not ROWSxN, e.g. 64x1000")
        shapes.append((int(m.group(1)), int(m.group(2))))
    return tuple(shapes)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few shapes, few rounds (a smoke run)")
    p.add_argument("--out", type=Path, help="write the JSON here (default: bench/results/)")
    p.add_argument("--shapes", type=parse_shapes, help="e.g. 1x10,64x1000 (default: all)")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="comma list: float32,float64")
    p.add_argument("--threads", default=",".join(map(str, THREADS)), help="comma list: 1,2")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def import_native():
    try:
        from softmax_grad import native
    except ImportError as e:
        sys.exit(
            f"bench: softmax_grad.native is not importable ({e}); build it first (make install)"
        )
    return native


def import_torch(no_torch: bool, notes: list[str]):
    if no_torch:
        notes.append("PyTorch left out (--no-torch).")
        return None
    # Idle OpenMP workers sleep instead of spinning: otherwise torch's threads keep the second
    # core busy after each call and slow down whatever is timed next in this process (the native
    # kernels and the floor), which would bias every comparison against them.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    notes.append(f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} for PyTorch's OpenMP threads.")
    try:
        import torch
    except ImportError as e:
        notes.append(f"PyTorch not importable ({e}): torch columns and targets skipped.")
        return None
    return torch


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    notes: list[str] = []
    native = import_native()
    torch = import_torch(args.no_torch, notes)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    isas = tuple(native.isas())
    started = _dt.datetime.now().astimezone()
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    plans = {
        (s, d): plan_series(s, isas, threads, torch is not None) for s in shapes for d in dtypes
    }
    progress = Progress(sum(len(p) for p in plans.values()), enabled=not args.quiet)
    cases = []
    for (shape, dtype), series in plans.items():
        head = f"{shape[0]}x{shape[1]} {dtype}"
        arrays = make_inputs(shape, dtype)
        bind(series, arrays, native, torch)
        refs = {op: reference(op, arrays) for op in STREAMS}
        rounds = time_group(series, refs, cfg, progress, head, torch)
        cases += [case_record(s, shape, dtype, rounds) for s in series]
        del arrays, refs, series
        gc.collect()
    progress.close()

    result = {
        "schema": SCHEMA_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
        "machine": machine_info(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "versions": versions(native, torch),
        "git": git_info(),
        "config": {
            "quick": args.quick,
            "shapes": [list(s) for s in shapes],
            "dtypes": list(dtypes),
            "threads": list(threads),
            "native_default_isa": best_isa(isas),
            **cfg,
        },
        "method": {
            "statistic": "median over rounds of (batch time / calls); min also given",
            "timer": "time.perf_counter_ns via timeit.Timer (gc disabled while timing)",
            "interleaving": "each round samples every series of a (shape, dtype) once, in a "
            "fresh seeded random order; calls < 5 ms get untimed calls (a quarter of a batch) "
            "before each sample",
            "bytes": {
                "vjp": "3 * rows * n * itemsize (read y, dy; write dx)",
                "softmax": "2 * rows * n * itemsize (read x; write y)",
                "floor": "3 * rows * n * itemsize (read a, b; write c = a + b)",
            },
            "gbps": "bytes / median_ns (1 GB = 1e9 bytes); gbps_best uses min_ns",
            "buffers": f"inputs and outputs {ALIGN}-byte aligned, pages touched before timing; "
            "variant 'out' writes into a pre-allocated output, 'alloc' returns a new array",
            "threads": "native: threads=t; torch: torch.set_num_threads(t); numpy: single "
            "thread (recorded as 1); threads null = the implementation's default",
            "torch_calls": "torch._softmax_backward_data(dy, y, -1, dtype, grad_input=out) and "
            "torch.softmax(x, -1, out=out) on tensors sharing the NumPy buffers",
        },
        "notes": notes,
        "cases": cases,
    }
    result["targets"] = evaluate_targets(cases, isas, shapes, dtypes, threads, torch is not None)

    print(format_table(result))
    print(format_targets(result["targets"]))
    if torch is None:
        print("note: " + notes[-1])
    print(
        f"load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
        f"{result['duration_s']:.0f} s"
    )
    if args.out is not None:
        path = args.out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_json(result))
    else:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
        path = RESULTS_DIR / f"{started:%Y%m%d-%H%M%S}-{host}.json"
        path.write_text(to_json(result))
        shutil.copyfile(path, RESULTS_DIR / "latest.json")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
