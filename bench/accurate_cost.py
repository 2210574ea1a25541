#!/usr/bin/env python
"""What does the accurate form of the softmax VJP cost? ``accurate=True`` against the default.

Times ``softmax_grad.softmax_vjp`` (NumPy) and ``softmax_grad.native.softmax_vjp`` (the default
ISA, 1 thread and default threads, writing into ``out``) with ``accurate=False`` and
``accurate=True``, side by side in interleaved rounds in one process, on two kinds of rows:

- ``bench``: the benchmark's inputs (:func:`bench.measure.make_inputs`: logits 2 x standard
  normal), where rows of 1000 or more classes have no entry >= 1/2, so the accurate form only
  pays for looking for one;
- ``confident``: the same logits, with one random class per row set 8 above the row's
  log-sum-exp, so every row has a dominant entry (y_c > 0.999) and takes the accurate form, as
  in the output of a trained classifier.

The issue that introduced the accurate form allowed it to be the default only if it cost at most
5 % in the benchmark at shapes >= 64x1000. Prints median ns per call and the ratio
accurate / plain per case, and writes JSON (``--out``, default
``bench/results/accurate-cost-<time>.json``). Usage, from the repository root:
``.venv/bin/python -m bench.accurate_cost [--quick] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from bench import measure

SHAPES = ((64, 1000), (1024, 1024), (256, 32000))
DTYPES = ("float32", "float64")
KINDS = ("bench", "confident")
ROUNDS = 21
SAMPLE_S = 0.01


def inputs(shape, dtype: str, kind: str) -> dict[str, np.ndarray]:
    """y = softmax(x), dy and out, for the benchmark's rows or confident ones (module docstring)."""
    import softmax_grad as sg

    arrays = measure.make_inputs(shape, dtype)
    if kind == "confident":
        rng = np.random.default_rng(1)
        x = arrays["x"].astype(np.float64)
        lse = np.log(np.sum(np.exp(x), axis=-1))
        x[np.arange(shape[0]), rng.integers(0, shape[1], shape[0])] = lse + 8.0
        arrays["y"][...] = sg.softmax(x)
    arrays["out"] = measure.aligned_empty(shape, dtype)
    return arrays


def statements(threads_default: bool) -> dict[tuple[str, str, bool], str]:
    """(impl, threads, accurate) -> the timed statement."""
    series = {}
    for accurate in (False, True):
        series[("numpy", "1", accurate)] = f"sg.softmax_vjp(y, dy, accurate={accurate})"
        series[("native", "1", accurate)] = (
            f"native.softmax_vjp(y, dy, out=out, threads=1, accurate={accurate})"
        )
        if threads_default:
            series[("native", "default", accurate)] = (
                f"native.softmax_vjp(y, dy, out=out, accurate={accurate})"
            )
    return series


def measure_case(shape, dtype: str, kind: str, rounds: int) -> list[dict]:
    import softmax_grad as sg
    from softmax_grad import native

    arrays = inputs(shape, dtype, kind)
    ns = {"sg": sg, "native": native, **arrays}
    series = statements(threads_default=True)
    timers = {k: measure.timer(stmt, ns) for k, stmt in series.items()}
    calls = {k: max(1, int(SAMPLE_S * 1e9 / measure.sample_ns(t, 1))) for k, t in timers.items()}
    samples = {k: [] for k in series}
    for r in range(rounds):
        keys = list(series)
        np.random.default_rng(r).shuffle(keys)
        for k in keys:
            samples[k].append(measure.sample_ns(timers[k], calls[k], warm=max(1, calls[k] // 4)))
    confident = float(np.mean(np.max(arrays["y"].astype(np.float64), axis=-1) >= 0.5))
    cases = []
    for (impl, threads, accurate), s in samples.items():
        cases.append(
            {
                "shape": list(shape),
                "dtype": dtype,
                "kind": kind,
                "confident_rows": confident,
                "impl": impl,
                "threads": threads,
                "accurate": accurate,
                "median_ns": statistics.median(s),
                "min_ns": min(s),
                "rounds": rounds,
                "calls_per_sample": calls[(impl, threads, accurate)],
            }
        )
    return cases


def ratios(cases: list[dict]) -> list[dict]:
    """accurate / plain median per (shape, dtype, kind, impl, threads)."""
    plain = {
        (tuple(c["shape"]), c["dtype"], c["kind"], c["impl"], c["threads"]): c
        for c in cases
        if not c["accurate"]
    }
    out = []
    for c in cases:
        if c["accurate"]:
            p = plain[(tuple(c["shape"]), c["dtype"], c["kind"], c["impl"], c["threads"])]
            out.append(
                {
                    "shape": c["shape"],
                    "dtype": c["dtype"],
                    "kind": c["kind"],
                    "confident_rows": c["confident_rows"],
                    "impl": c["impl"],
                    "threads": c["threads"],
                    "ratio": c["median_ns"] / p["median_ns"],
                    "ratio_of_minima": c["min_ns"] / p["min_ns"],
                }
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small shape, few rounds")
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args(argv)
    from softmax_grad import native

    shapes, rounds = (((16, 1000),), 3) if args.quick else (SHAPES, ROUNDS)
    cases = []
    for shape in shapes:
        for dtype in DTYPES:
            for kind in KINDS:
                cases += measure_case(shape, dtype, kind, rounds)
    table = ratios(cases)
    print("accurate=True / accurate=False, median time per call (ratio of the minima)")
    print(f"{'shape':>9} {'dtype':8} {'rows':10} {'confident':>9} {'impl':7} {'threads':8} ratio")
    for r in table:
        name = f"{r['shape'][0]}x{r['shape'][1]}"
        print(
            f"{name:>9} {r['dtype']:8} {r['kind']:10} {r['confident_rows']:9.2f} {r['impl']:7} "
            f"{r['threads']:8} {r['ratio']:.2f} ({r['ratio_of_minima']:.2f})"
        )
    measure.write_result(
        "accurate-cost",
        ["python -m bench.accurate_cost", *(argv or sys.argv[1:])],
        {"native_isa": native.isas()[-1], "cases": cases, "ratios": table},
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
