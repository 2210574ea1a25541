r"""Benchmark the softmax VJP and forward softmax: NumPy, native kernels, PyTorch and JAX (CPU).

Run from the repository root::

    python -m bench.run                 # full run with the control, a few minutes on 2 cores
    python -m bench.run --quick         # a smoke run: few shapes, few rounds
    python -m bench.run --out /tmp/r.json --shapes 1x10,64x1000 --no-torch --no-jax

Protocol (``bench/README.md`` has the details): one worker process per peer and thread count
(``ours-1``, ``ours-2``, ``torch-1``, ``torch-2``, ``jax``; see :mod:`bench.measure`), each peer
with its own default settings. For each (shape, dtype) every worker calibrates its series; then the
workers take turns, in the order A B ... B A, each running half of its rounds per turn, so a
slow drift of the machine hits all of them alike while no two peers ever run at the same time.
``--control`` then measures a few series again, each alone in a fresh process, and records how
well they agree with the full run. One JSON file per run goes to ``bench/results/``
(``<date>-<time>-<host>.json``, copied to ``latest.json`` for the book); a table and the targets
(:func:`bench.results.evaluate_targets`) are printed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import measure, results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
SCHEMA_VERSION = 2

FULL_SHAPES = ((1, 10), (1, 1000), (64, 10), (64, 1000), (1024, 1024), (256, 32000), (4096, 4096))
QUICK_SHAPES = ((1, 10), (64, 10), (1024, 1024))
DTYPES = ("float32", "float64")
THREADS = (1, 2)
# bfloat16 VJP cases (issue 12, item 5): against PyTorch's bfloat16 softmax backward.
BF16_SHAPES = ((64, 1000), (1024, 1024), (256, 32000))
QUICK_BF16_SHAPES = ((1024, 1024),)

# Time budgets. A "group" is one (shape, dtype); its budget is shared by the workers in
# proportion to their number of series.
FULL = {"batch_ns": 2_000_000, "group_budget_s": 20.0, "min_rounds": 6, "max_rounds": 100}
QUICK = {"batch_ns": 200_000, "group_budget_s": 0.3, "min_rounds": 4, "max_rounds": 6}

# Series measured again alone by --control: (op, impl, threads) at 1024x1024 float32 (or the
# largest shape of the run); native means the default ISA.
CONTROL = (("vjp", "native", 1), ("vjp", "native", 2), ("vjp", "torch", 2), ("vjp", "torch", 1))

# Settings that would change how PyTorch's OpenMP threads wait; the workers run without them.
THREADING_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS")


class WorkerProcess:
    """A ``python -m bench.measure <name>`` process and its JSON-lines conversation."""

    def __init__(self, name: str):
        env = {k: v for k, v in os.environ.items() if k not in THREADING_ENV}
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.measure", name],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def ask(self, cmd: str, **kw) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            sys.exit(f"bench: worker {self.name} died (exit status {code}) during {cmd!r}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


class Progress:
    """Progress lines on stderr (one per step)."""

    def __init__(self, enabled: bool):
        self.enabled, self.t0 = enabled, time.perf_counter()

    def __call__(self, text: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:5.0f} s] {text}", file=sys.stderr, flush=True)


def measure_group(workers, shape, dtype, cfg, flip: bool, progress) -> list[dict]:
    """All series of one (shape, dtype): calibrate, then two turns per worker, A B .. B A."""
    head = f"{shape[0]}x{shape[1]} {dtype}"
    prep = {
        w.name: w.ask("prepare", shape=list(shape), dtype=dtype, batch_ns=cfg["batch_ns"])
        for w in workers
    }
    total = sum(p["series"] for p in prep.values()) or 1
    plan = {}
    for w in workers:
        share = cfg["group_budget_s"] * prep[w.name]["series"] / total
        n = int(share * 1e9 // max(prep[w.name]["round_ns"], 1))
        n = max(cfg["min_rounds"], min(cfg["max_rounds"], n))
        plan[w.name] = (n, share)
    order = list(reversed(workers)) if flip else list(workers)
    for turn, seq in enumerate((order, list(reversed(order)))):
        for w in seq:
            n, share = plan[w.name]
            count = math.ceil(n / 2) if turn == 0 else n - math.ceil(n / 2)
            progress(
                f"{head}: {w.name}, turn {turn + 1}/2, {count} rounds of "
                f"{prep[w.name]['series']} series"
            )
            # The round cost was estimated from the fastest calls; on a busy machine the calls
            # can be far slower, so a turn stops early (after half the minimum) well past budget.
            w.ask(
                "rounds",
                count=count,
                deadline_s=0.75 * share,
                min_rounds=math.ceil(cfg["min_rounds"] / 2),
            )
    cases = []
    for w in workers:
        cases += w.ask("finish")["cases"]
    return cases


def control_runs(cases, shapes, nat: str, cfg_batch_ns, progress) -> list[dict[str, Any]]:
    """Each CONTROL series measured again, alone in a fresh worker, for as many rounds."""
    shape = (1024, 1024) if (1024, 1024) in shapes else shapes[-1]
    ix = results.Index(cases)
    out = []
    for op, impl, t in CONTROL:
        isa = nat if impl == "native" else None
        inside = ix.case(op, impl, shape, "float32", t, isa)
        if inside is None:
            continue
        progress(f"control: {op} {impl} t={t} {shape[0]}x{shape[1]} float32 alone")
        w = WorkerProcess(inside["worker"])
        try:
            w.ask(
                "prepare",
                shape=list(shape),
                dtype="float32",
                batch_ns=cfg_batch_ns,
                only=[[op, impl, isa, t, "out"]],
                calls=inside["calls_per_sample"],
            )
            w.ask("rounds", count=inside["rounds"], deadline_s=1e9, min_rounds=inside["rounds"])
            (alone,) = w.ask("finish")["cases"]
        finally:
            w.close()
        out.append(
            {
                "op": op,
                "impl": impl,
                "isa": isa,
                "threads": t,
                "shape": list(shape),
                "dtype": "float32",
                "worker": inside["worker"],
                "rounds": alone["rounds"],
                **results.agreement(inside["samples_ns"], alone["samples_ns"]),
                "alone_samples_ns": alone["samples_ns"],
            }
        )
    return out


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """``"1x10,64x1000"`` -> ``((1, 10), (64, 1000))``."""
    shapes = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", part)
        if not m:
            raise argparse.ArgumentTypeError(f"shape {part!r} is not ROWSxN, e.g. 64x1000")
        shapes.append((int(m.group(1)), int(m.group(2))))
    return tuple(shapes)


def _shapes_or_none(text: str) -> tuple[tuple[int, int], ...]:
    """:func:`parse_shapes`, or no shapes for ``none``."""
    return () if text.strip().lower() == "none" else parse_shapes(text)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few shapes, few rounds (a smoke run)")
    p.add_argument("--out", type=Path, help="write the JSON here (default: bench/results/)")
    p.add_argument("--shapes", type=parse_shapes, help="e.g. 1x10,64x1000 (default: all)")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="comma list: float32,float64")
    p.add_argument(
        "--bf16-shapes",
        type=_shapes_or_none,
        default=None,
        help="shapes of the bfloat16 VJP cases, e.g. 64x1000,1024x1024, or 'none' (default: "
        "none with --shapes, else 1024x1024 with --quick and 64x1000,1024x1024,256x32000)",
    )
    p.add_argument("--threads", default=",".join(map(str, THREADS)), help="comma list: 1,2")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-jax", action="store_true", help="leave JAX out")
    p.add_argument(
        "--control",
        action="store_true",
        help="afterwards, measure a few series alone (fresh process) and compare with the run",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p.parse_args(argv)


def have_peer(module: str, name: str, left_out: bool, notes: list[str]) -> bool:
    """Whether the peer ``module`` (``torch``, ``jax``) takes part: not left out, importable."""
    if left_out:
        notes.append(f"{name} left out (--no-{module}).")
        return False
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    if probe.returncode != 0:
        notes.append(f"{name} not importable: {module} columns and targets are N/A.")
        return False
    return True


def versions_of(hellos: dict[str, dict]) -> dict[str, Any]:
    """One versions record from what every worker reported about itself."""
    ours = next(h for n, h in hellos.items() if n.startswith("ours"))
    torch = [h for n, h in hellos.items() if n.startswith("torch")]
    out = {k: ours.get(k) for k in ("python", "numpy", "softmax_grad", "cffi", "compiler")}
    out["native_isas"] = ours["native_isas"]
    out["torch"] = torch[0]["torch"] if torch else None
    if torch:
        out["torch_cpu_capability"] = torch[0]["torch_cpu_capability"]
    out["jax"] = hellos["jax"]["jax"] if "jax" in hellos else None
    out["workers"] = {
        n: {k: h[k] for k in ("pid", "env", "torch_threads", "torch_parallel_info") if k in h}
        for n, h in hellos.items()
    }
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else FULL
    shapes = args.shapes or (QUICK_SHAPES if args.quick else FULL_SHAPES)
    bf16_shapes = args.bf16_shapes
    if bf16_shapes is None:  # --shapes alone limits the run to those shapes
        bf16_shapes = () if args.shapes else QUICK_BF16_SHAPES if args.quick else BF16_SHAPES
    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    notes: list[str] = []
    torch_ok = have_peer("torch", "PyTorch", args.no_torch, notes)
    jax_ok = have_peer("jax", "JAX", args.no_jax, notes)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    progress = Progress(not args.quiet)
    started = _dt.datetime.now().astimezone()
    load = {"start": list(os.getloadavg()), "groups": []}
    t_start = time.perf_counter()
    git = measure.git_info()

    workers = [WorkerProcess(n) for n in measure.worker_names(threads, torch_ok, jax_ok)]
    cases: list[dict] = []
    try:
        hellos = {w.name: w.ask("hello") for w in workers}
        versions = versions_of(hellos)
        groups = [(s, d) for s in shapes for d in dtypes] + [(s, "bfloat16") for s in bf16_shapes]
        for i, (shape, dtype) in enumerate(groups):
            load["groups"].append(
                {"shape": list(shape), "dtype": dtype, "load": list(os.getloadavg())}
            )
            cases += measure_group(workers, shape, dtype, cfg, bool(i % 2), progress)
    finally:
        for w in workers:
            w.close()
    nat = results.best_isa(versions["native_isas"])
    control = control_runs(cases, shapes, nat, cfg["batch_ns"], progress) if args.control else None
    load["end"] = list(os.getloadavg())

    result = {
        "schema": SCHEMA_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "command": ["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])],
        "machine": measure.machine_info(),
        "load_average": load,
        "versions": versions,
        "git": git,
        "config": {
            "quick": args.quick,
            "shapes": [list(s) for s in shapes],
            "dtypes": list(dtypes),
            "bf16_shapes": [list(s) for s in bf16_shapes],
            "threads": list(threads),
            "native_default_isa": nat,
            "workers": [w.name for w in workers],
            "settle_ns": measure.SETTLE_NS,
            **cfg,
        },
        "method": {
            "protocol": "one worker process per peer and thread count (ours-t: NumPy, native, "
            "native.stream_add, np.add, cffi minimum; torch-t: PyTorch with "
            "torch.set_num_threads(t) and no OpenMP environment settings; jax: jax.jit of "
            "jax.nn.softmax and of its VJP closure, compiled before timing, every call ending "
            "in block_until_ready); per (shape, dtype) "
            "the workers take turns A B .. B A, each running half its rounds per turn; only one "
            "worker runs at a time",
            "statistic": "median over rounds of (batch time / calls); min also given",
            "timer": "timeit.Timer on a statement string with time.perf_counter_ns (gc off)",
            "interleaving": "within a worker each round samples every series once, in a fresh "
            "seeded random order; calls < 5 ms get untimed calls (a quarter of a batch) before "
            "each sample; each turn starts with untimed rounds for at least 20 ms",
            "bytes": {
                "vjp": "3 * rows * n * itemsize (read y, dy; write dx)",
                "softmax": "2 * rows * n * itemsize (read x; write y)",
                "floor": "3 * rows * n * itemsize (read a, b; write c = a + b)",
            },
            "gbps": "bytes / median_ns (1 GB = 1e9 bytes); gbps_best uses min_ns",
            "floor": "the fastest c = a + b with at most t threads among native.stream_add, "
            "torch.add (1..t threads) and np.add (1 thread); recorded under 'floors'",
            "threads": "native: threads=t (a maximum; small calls use one); torch: "
            "torch.set_num_threads(t) in its own process; numpy: single thread (recorded as 1); "
            "jax: XLA's default threading, which JAX cannot set (recorded as null); "
            "threads null = the implementation's default",
            "jax": "vjp: jax.vjp(jax.nn.softmax, x) once, then the jit-compiled application of "
            "its backward closure to dy (the residuals of JAX's own forward pass are inputs); "
            "softmax: jax.jit(jax.nn.softmax); both return new arrays (variant alloc)",
            "control": "each control series measured again alone, in a fresh worker process, "
            "for as many rounds; agree = |alone/inside - 1| <= the larger relative IQR",
        },
        "notes": notes,
        "cases": cases,
    }
    result["floors"] = results.floor_choices(cases, shapes, dtypes, threads)
    result["targets"] = results.evaluate_targets(
        cases, versions["native_isas"], shapes, dtypes, threads, bf16_shapes
    )
    if control is not None:
        result["control"] = control

    print(results.format_table(result))
    print(results.format_targets(result["targets"]))
    for c in control or []:
        print(
            f"control {c['op']} {c['impl']} t={c['threads']} {c['shape'][0]}x{c['shape'][1]}: "
            f"alone {c['alone_median_ns'] / 1e3:.1f} us, inside {c['inside_median_ns'] / 1e3:.1f}"
            f" us, ratio {c['ratio']:.3f}, noise {max(c['inside_noise'], c['alone_noise']):.3f}"
            f" -> {'agree' if c['agree'] else 'DIFFER'}"
        )
    print(
        f"load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end; "
        f"{result['duration_s']:.0f} s; git dirty: {git['dirty']}"
    )
    if args.out is not None:
        path = args.out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(results.to_json(result))
    else:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
        path = RESULTS_DIR / f"{started:%Y%m%d-%H%M%S}-{host}.json"
        path.write_text(results.to_json(result))
        shutil.copyfile(path, RESULTS_DIR / "latest.json")
        # The README's targets section follows the committed run.
        readme = HERE / "README.md"
        body = results.targets_markdown(result)
        readme.write_text(results.replace_between(readme.read_text(), body))
        print(f"wrote {RESULTS_DIR / 'latest.json'} and the targets section of {readme}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
