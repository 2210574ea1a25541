#!/usr/bin/env python
"""Probe: what would small VJP calls cost behind a CPython C-API entry point instead of cffi?

Compiles ``bench/capi_probe.c`` with the kernels of ``csrc/`` into a temporary directory (the
package is not changed) and times, side by side in interleaved rounds, at 1x10 and 1x1000:

- ``native.softmax_vjp`` (cffi, with its validation), allocating and writing into ``out``;
- the cffi minimum of :func:`bench.measure.cffi_minimum` (``from_buffer`` x3 + the call, no
  validation);
- the C-API probe, which makes the same checks as ``native.softmax_vjp``'s fast path in C;
- ``torch._softmax_backward_data`` when PyTorch is installed.

Prints a table and writes JSON (``--out``, default ``bench/results/capi-probe-<time>.json``).
Usage, from the repository root: ``.venv/bin/python -m bench.capi_probe [--out FILE]``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

from bench import measure

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHAPES = ((1, 10), (1, 1000))
DTYPES = ("float32", "float64")
ROUNDS = 31
SAMPLE_S = 0.02


def build(tmp: Path):
    """Compile the probe and csrc/ with the package's flags; import it from ``tmp``."""
    from softmax_grad._native_build import COMPILE_ARGS, SOURCES

    so = tmp / ("_capi_probe" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [
        sysconfig.get_config_var("CC").split()[0],
        *COMPILE_ARGS,
        "-shared",
        "-fPIC",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{np.get_include()}",
        f"-I{REPO / 'csrc'}",
        str(HERE / "capi_probe.c"),
        *(str(REPO / "csrc" / s) for s in SOURCES),
        "-lm",
        "-o",
        str(so),
    ]
    subprocess.run(cmd, check=True)
    # The compiled probe, not the harness: an extension module loaded from its file.
    spec = importlib.util.spec_from_file_location("_capi_probe", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def statements(probe, native, torch, y, dy, out) -> dict:
    """(implementation, variant) -> (statement, namespace) for one (shape, dtype).

    Every call is timed as a statement string with the harness's timer
    (:func:`bench.measure.timer`), as in ``python -m bench.run``: no lambda around the call.
    """
    ns = {"y": y, "dy": dy, "out": out, "vjp": native.softmax_vjp, "probe": probe.vjp}
    ns["bare_alloc"] = measure.cffi_minimum(native, "alloc")
    ns["bare_out"] = measure.cffi_minimum(native, "out")
    series = {
        ("native", "alloc"): "vjp(y, dy)",
        ("native", "out"): "vjp(y, dy, out=out)",
        ("cffi-minimum", "alloc"): "bare_alloc(y, dy)",
        ("cffi-minimum", "out"): "bare_out(y, dy, out=out)",
        ("capi-probe", "alloc"): "probe(y, dy)",
        ("capi-probe", "out"): "probe(y, dy, out)",
    }
    if torch is not None:
        ty, tdy, tout = (torch.from_numpy(a) for a in (y, dy, out))
        ns.update(f=torch._softmax_backward_data, ty=ty, tdy=tdy, tout=tout, dt=ty.dtype)
        series[("torch", "alloc")] = "f(tdy, ty, -1, dt)"
        series[("torch", "out")] = "f(tdy, ty, -1, dt, grad_input=tout)"
    return {k: (stmt, ns) for k, stmt in series.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from softmax_grad import native

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None

    with tempfile.TemporaryDirectory() as tmp:
        probe = build(Path(tmp))
        rng = np.random.default_rng(0)
        cases = []
        for shape in SHAPES:
            for dtype in DTYPES:
                y = rng.random(shape).astype(dtype)
                dy = rng.random(shape).astype(dtype)
                out = np.empty(shape, dtype)
                ref = native.softmax_vjp(y, dy)
                assert np.array_equal(probe.vjp(y, dy), ref)
                assert probe.vjp(y, dy, out) is out and np.array_equal(out, ref)
                series = statements(probe, native, torch, y, dy, out)
                timers = {k: measure.timer(stmt, ns) for k, (stmt, ns) in series.items()}
                calls = {
                    k: max(1, int(SAMPLE_S * 1e9 / measure.sample_ns(t, 200)))
                    for k, t in timers.items()
                }
                samples = {k: [] for k in series}
                for r in range(ROUNDS):
                    keys = list(series)
                    np.random.default_rng(r).shuffle(keys)
                    for k in keys:
                        samples[k].append(measure.sample_ns(timers[k], calls[k]))
                for (impl, variant), s in samples.items():
                    cases.append(
                        {
                            "shape": list(shape),
                            "dtype": dtype,
                            "impl": impl,
                            "variant": variant,
                            "median_ns": statistics.median(s),
                            "min_ns": min(s),
                            "rounds": ROUNDS,
                            "calls_per_sample": calls[(impl, variant)],
                        }
                    )
    result = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": None if torch is None else torch.__version__,
        "native_isas": list(native.isas()),
        "threads": 1,
        "cases": cases,
    }
    impls = ["native", "cffi-minimum", "capi-probe"] + (["torch"] if torch is not None else [])
    print("median ns per call, 1 thread (min in parentheses)")
    print(f"{'shape':>7} {'dtype':8} {'variant':7} " + " ".join(f"{i:>16}" for i in impls))
    for shape in SHAPES:
        for dtype in DTYPES:
            for variant in ("alloc", "out"):
                cells = []
                for impl in impls:
                    c = next(
                        c
                        for c in cases
                        if c["shape"] == list(shape)
                        and c["dtype"] == dtype
                        and c["impl"] == impl
                        and c["variant"] == variant
                    )
                    cells.append(f"{c['median_ns']:7.0f} ({c['min_ns']:5.0f})")
                name = f"{shape[0]}x{shape[1]}"
                print(f"{name:>7} {dtype:8} {variant:7} " + " ".join(f"{x:>16}" for x in cells))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.out or HERE / "results" / f"capi-probe-{stamp}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
