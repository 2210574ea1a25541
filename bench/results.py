r"""Judging a results JSON: pure functions of its ``cases`` (no timing, no imports of the peers).

- :class:`Index` looks a series up by (op, impl, shape, dtype, threads, isa, variant);
- :func:`floor_case` chooses the floor of one (shape, dtype, threads) and :func:`floor_choices`
  records that choice for every case of a run;
- :func:`evaluate_targets` decides the performance targets (PASS/FAIL/N/A with the numbers);
- :func:`agreement` compares one series measured alone with the same series inside the run;
- :func:`format_table` and :func:`format_targets` print a run; :func:`to_json` writes one.

A *speed-up* is the other implementation's median time over the native one; the *floor ratio*
is the floor's median time over the native VJP's, i.e. the VJP's share of the floor's bandwidth
(both move the same bytes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

#: Validation may add at most this fraction to the cffi minimum (target ``validation_overhead``).
VALIDATION_ALLOWANCE = 0.15


def best_isa(isas) -> str:
    """The ISA ``isa=None`` dispatches to: ``native.isas()`` is ordered worst to best."""
    return isas[-1]


class Index:
    """Look up a case by (op, impl, shape, dtype, threads, isa, variant)."""

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

    def case(self, op, impl, shape, dtype, threads, isa=None, variant="out"):
        return self.d.get((op, impl, isa, tuple(shape), dtype, threads, variant))

    def get(self, op, impl, shape, dtype, threads, isa=None, variant="out"):
        """The median time (ns) of a case, or None if it was not measured."""
        c = self.case(op, impl, shape, dtype, threads, isa, variant)
        return c["median_ns"] if c else None


def ratio(a, b):
    """``a / b``, or None when either is missing."""
    return None if a is None or b is None else a / b


def floor_candidates(ix: Index, shape, dtype, threads) -> list[dict]:
    """Every ``c = a + b`` measured on these bytes with at most ``threads`` threads."""
    t_max = threads or 1
    found = [
        ix.case("floor", impl, shape, dtype, t)
        for impl in ("floor", "torch")
        for t in range(1, t_max + 1)
    ]
    found.append(ix.case("floor", "numpy", shape, dtype, 1))
    return [c for c in found if c is not None]


def floor_case(ix: Index, shape, dtype, threads):
    """The floor: the fastest ``c = a + b`` measured with at most ``threads`` threads.

    Candidates are ``native.stream_add`` and ``torch.add`` at 1..``threads`` threads and
    NumPy's ``np.add`` (1 thread); all move the VJP's bytes. Whichever is fastest is the best
    that is known to be possible, so the VJP is held to that one (a weak floor would flatter
    it). Anything ``t`` threads can do, ``t + 1`` can do too, hence "at most".
    """
    found = floor_candidates(ix, shape, dtype, threads)
    return min(found, key=lambda c: c["median_ns"]) if found else None


FLOOR_NAMES = {"floor": "native.stream_add", "numpy": "np.add", "torch": "torch.add"}


def floor_choices(cases, shapes, dtypes, threads) -> list[dict[str, Any]]:
    """The floor chosen for every (shape, dtype, threads): which ``c = a + b`` and its numbers."""
    ix = Index(cases)
    out = []
    for s in shapes:
        for d in dtypes:
            for t in threads:
                c = floor_case(ix, s, d, t)
                if c is None:
                    continue
                out.append(
                    {
                        "shape": list(s),
                        "dtype": d,
                        "threads": t,
                        "impl": c["impl"],
                        "name": FLOOR_NAMES[c["impl"]],
                        "impl_threads": c["threads"],
                        "median_ns": c["median_ns"],
                        "min_ns": c["min_ns"],
                        "gbps": c["gbps"],
                    }
                )
    return out


def floor_of(floors, shape, dtype, threads):
    """The recorded floor choice (an item of :func:`floor_choices`), or None."""
    for f in floors:
        if tuple(f["shape"]) == tuple(shape) and f["dtype"] == dtype and f["threads"] == threads:
            return f
    return None


# --------------------------------------------------------------------------------------------
# Targets


def batched(shape) -> bool:
    """Shapes "from 64x10 up": at least 64 rows of at least 10 (one-row calls are per-call)."""
    return shape[0] >= 64 and shape[1] >= 10


def at_least(shape, rows, n) -> bool:
    """At least as many elements as ``rows x n``."""
    return shape[0] * shape[1] >= rows * n


def _check(shape, dtype, t, num, den, relation, threshold, **extra) -> dict[str, Any]:
    """One check: ``value = num / den`` (median times) against ``threshold``.

    ``value_from_min`` is the same ratio from the minima, a hint of what a quiet machine gives;
    it decides nothing. ``pass`` is None when a case was not measured.
    """
    row = {"shape": list(shape), "dtype": dtype, "threads": t, "relation": relation}
    row["threshold"] = threshold
    if num is None or den is None:
        row.update(value=None, value_from_min=None, pass_=None)
    else:
        value = num["median_ns"] / den["median_ns"]
        ok = value >= threshold if relation == ">=" else value <= threshold
        row.update(
            value=value,
            value_from_min=num["min_ns"] / den["min_ns"],
            num_ns=num["median_ns"],
            den_ns=den["median_ns"],
            pass_=bool(ok),
        )
    row["pass"] = row.pop("pass_")
    row.update(extra)
    return row


def _target(tid, text, checks) -> dict[str, Any]:
    decided = [c["pass"] for c in checks if c["pass"] is not None]
    if not checks or len(decided) < len(checks):
        status = "N/A"
    else:
        status = "PASS" if all(decided) else "FAIL"
    worst = None
    values = [c for c in checks if c["value"] is not None]
    if values:
        pick = min if checks[0]["relation"] == ">=" else max
        w = pick(values, key=lambda c: c["value"])
        worst = {k: w[k] for k in ("shape", "dtype", "threads", "value", "threshold")}
    return {"id": tid, "text": text, "status": status, "worst": worst, "checks": checks}


def evaluate_targets(cases, isas, shapes, dtypes, threads, bf16_shapes=()) -> list[dict[str, Any]]:
    """The performance targets of issue 14, each PASS/FAIL/N/A with the numbers behind it.

    "native" is the ISA ``isa=None`` dispatches to, called with ``threads=t``. A target whose
    cases were not all measured (no PyTorch, a shape left out) is N/A. ``worst`` is the check
    closest to failing (or failing by most).
    """
    ix = Index(cases)
    nat = best_isa(isas)
    shapes = [tuple(s) for s in shapes]
    grid = [(s, d, t) for s in shapes for d in dtypes for t in threads]

    def native(op, s, d, t):
        return ix.case(op, "native", s, d, t, nat)

    def vs_torch(op, threshold, keep):
        """Checks of PyTorch's time / native time >= threshold at the shapes ``keep`` accepts."""
        return [
            _check(s, d, t, ix.case(op, "torch", s, d, t), native(op, s, d, t), ">=", threshold)
            for s, d, t in grid
            if keep(s)
        ]

    targets = [
        _target(
            "vjp_vs_torch",
            f"native VJP ({nat}) >= 1.0x PyTorch's torch._softmax_backward_data (default "
            "threading, its own process) at every shape from 64x10 up",
            vs_torch("vjp", 1.0, batched),
        ),
        _target(
            "vjp_vs_torch_4096",
            f"native VJP ({nat}) >= 1.2x PyTorch at 4096x4096",
            vs_torch("vjp", 1.2, lambda s: s == (4096, 4096)),
        ),
    ]
    floor_checks = []
    for s, d, t in grid:
        if not at_least(s, 1024, 1024):
            continue
        f = floor_case(ix, s, d, t)
        name = None if f is None else f"{FLOOR_NAMES[f['impl']]} t={f['threads']}"
        floor_checks.append(_check(s, d, t, f, native("vjp", s, d, t), ">=", 0.9, floor=name))
    targets.append(
        _target(
            "vjp_vs_floor",
            f"native VJP ({nat}) >= 0.9x the floor (the fastest c = a + b with at most as many "
            "threads: native.stream_add, np.add or torch.add) at every shape >= 1024x1024",
            floor_checks,
        )
    )
    bf16_grid = [(tuple(s), "bfloat16", t) for s in bf16_shapes for t in threads]
    targets.append(
        _target(
            "vjp_vs_torch_bf16",
            f"native bfloat16 VJP ({nat}) >= 1.0x PyTorch's bfloat16 "
            "torch._softmax_backward_data (default threading, its own process) at every "
            "bfloat16 shape >= 64x1000",
            [
                _check(s, d, t, ix.case("vjp", "torch", s, d, t), native("vjp", s, d, t), ">=", 1.0)
                for s, d, t in bf16_grid
                if at_least(s, 64, 1000)
            ],
        )
    )
    targets.append(
        _target(
            "softmax_vs_torch",
            f"native softmax ({nat}) >= 1.0x torch.softmax (default threading, its own process) "
            "at every shape >= 64x1000",
            vs_torch("softmax", 1.0, lambda s: at_least(s, 64, 1000)),
        )
    )
    val_checks = []
    for s in shapes:
        if s not in ((1, 10), (1, 1000)):
            continue
        for d in dtypes:
            for v in ("alloc", "out"):
                mine = ix.case("vjp", "native", s, d, None, None, v)
                bare = ix.case("vjp", "cffi-minimum", s, d, 1, None, v)
                val_checks.append(
                    _check(s, d, None, mine, bare, "<=", 1 + VALIDATION_ALLOWANCE, variant=v)
                )
    targets.append(
        _target(
            "validation_overhead",
            "native.softmax_vjp(y, dy) and native.softmax_vjp(y, dy, out=out) take at most "
            f"{1 + VALIDATION_ALLOWANCE:.2f}x the cffi minimum (allocation, from_buffer and the "
            "call; no validation) at 1x10 and 1x1000",
            val_checks,
        )
    )
    return targets


# --------------------------------------------------------------------------------------------
# Control: one series alone against the same series inside the full run


def agreement(inside, alone) -> dict[str, Any]:
    """Do two sets of samples of one series agree within their noise?

    ``ratio`` = median(alone) / median(inside). The noise of each set is its relative
    interquartile range, (q75 - q25) / median: the spread of one sample around the typical one.
    They agree when ``|ratio - 1|`` is at most the larger of the two noises.
    ``ratio_ci95`` is a bootstrap interval of ``ratio``.
    """
    a, b = np.asarray(inside, float), np.asarray(alone, float)
    ma, mb = float(np.median(a)), float(np.median(b))

    def noise(x, m):
        q25, q75 = np.quantile(x, [0.25, 0.75])
        return float((q75 - q25) / m)

    r = mb / ma
    na, nb = noise(a, ma), noise(b, mb)
    # A stricter view for the record: a 95 % bootstrap interval of the ratio of the medians
    # (seeded, so the same samples give the same interval). It ignores drift between the two
    # measurements, which the noise criterion above tolerates.
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(b, (2000, b.size)), axis=1) / np.median(
        rng.choice(a, (2000, a.size)), axis=1
    )
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {
        "inside_median_ns": ma,
        "alone_median_ns": mb,
        "ratio": r,
        "ratio_ci95": [float(lo), float(hi)],
        "inside_noise": na,
        "alone_noise": nb,
        "agree": bool(abs(r - 1) <= max(na, nb)),
    }


# --------------------------------------------------------------------------------------------
# Printing and writing


def _us(ns):
    if ns is None:
        return "-"
    us = ns / 1000
    return f"{us:.3f}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def _x(r):
    return "-" if r is None else f"{r:.2f}"


def format_table(result) -> str:
    """Median microseconds per call for every implementation, with the native ratios."""
    cases = result["cases"]
    ix = Index(cases)
    isas = result["versions"]["native_isas"]
    nat = best_isa(isas)
    have_torch = result["versions"]["torch"] is not None
    have_jax = result["versions"].get("jax") is not None
    shapes = [tuple(s) for s in result["config"]["shapes"]]
    floors = result.get("floors") or floor_choices(
        cases, shapes, result["config"]["dtypes"], result["config"]["threads"]
    )
    cols = ["numpy", *isas] + (["torch"] if have_torch else []) + (["jax"] if have_jax else [])
    cols += ["floor"]
    lines = []
    for op in ("vjp", "softmax"):
        head = (
            f"{op:7s} {'shape':>11s} {'dtype':7s} t | "
            + " ".join(f"{c:>8s}" for c in cols)
            + f" {'(floor is)':>20s} | {'GB/s':>6s} {'xfloor':>6s}"
            + (f" {'xtorch':>6s}" if have_torch else "")
            + (f" {'xjax':>6s}" if have_jax else "")
            + f" {'xnumpy':>6s}"
        )
        lines.append(
            f"{op}: median us per call (numpy: 1 thread, allocating; others write into out"
            + ("; jax: default threads, allocating, the same in every row" if have_jax else "")
            + f"); floor = the fastest c = a + b with at most t threads; ratios for native = {nat}"
        )
        lines.append(head)
        lines.append("-" * len(head))
        groups = [(s, d) for s in shapes for d in result["config"]["dtypes"]]
        if op == "vjp":
            groups += [(tuple(s), "bfloat16") for s in result["config"].get("bf16_shapes", ())]
        for s, d in groups:
            for t in result["config"]["threads"]:
                f = floor_of(floors, s, d, t)
                row = [ix.get(op, "numpy", s, d, 1, None, "alloc")]
                row += [ix.get(op, "native", s, d, t, isa) for isa in isas]
                if have_torch:
                    row.append(ix.get(op, "torch", s, d, t))
                jax_ns = ix.get(op, "jax", s, d, None, None, "alloc")
                if have_jax:
                    row.append(jax_ns)
                row.append(f["median_ns"] if f else None)
                c = ix.case(op, "native", s, d, t, nat)
                gbps = c["gbps"] if c else None
                med = c["median_ns"] if c else None
                fname = f"{f['name']} t={f['impl_threads']}" if f else "-"
                line = (
                    f"{op:7s} {f'{s[0]}x{s[1]}':>11s} {d:7s} {t} | "
                    + " ".join(f"{_us(v):>8s}" for v in row)
                    + f" {fname:>20s} | {'-' if gbps is None else f'{gbps:.1f}':>6s}"
                    + f" {_x(ratio(gbps, f['gbps'] if f else None)):>6s}"
                )
                if have_torch:
                    line += f" {_x(ratio(ix.get(op, 'torch', s, d, t), med)):>6s}"
                if have_jax:
                    line += f" {_x(ratio(jax_ns, med)):>6s}"
                line += f" {_x(ratio(row[0], med)):>6s}"
                lines.append(line)
        lines.append("")
    bare = [c for c in cases if c["impl"] == "cffi-minimum"]
    if bare:
        lines.append("validation: native.softmax_vjp with defaults next to the cffi minimum:")
        for c in bare:
            s, d, v = c["shape"], c["dtype"], c["variant"]
            mine = ix.get("vjp", "native", s, d, None, None, v)
            lines.append(
                f"  {s[0]}x{s[1]} {d:7s} {v:5s}: cffi minimum {c['median_ns']:6.0f} ns, "
                f"native {'-' if mine is None else f'{mine:.0f}'} ns "
                f"({_x(ratio(mine, c['median_ns']))}x)"
            )
        lines.append("")
    for c in cases:
        if c["check_ok"] is False:
            lines.append(
                f"WARNING: {c['op']} {c['impl']} {c['isa']} {c['shape']} {c['dtype']} "
                f"t={c['threads']} differs from the NumPy formula "
                f"(max abs error {c['max_abs_err_vs_numpy']})"
            )
    return "\n".join(lines)


def format_targets(targets) -> str:
    """One line per target, then one line per check."""
    lines = [
        "targets (decided on medians; the ratio of the minima is a hint of a quieter machine):"
    ]
    for t in targets:
        lines.append(f"  [{t['status']:4s}] {t['text']}")
        for c in t["checks"]:
            v = c["value"]
            if v is None:
                shown = "not measured"
            else:
                shown = (
                    f"{v:.2f}x ({c['relation']} {c['threshold']:.2f}x; "
                    f"from minima {c['value_from_min']:.2f}x)"
                )
            mark = "ok  " if c["pass"] else "----" if c["pass"] is None else "FAIL"
            t_ = "default" if c["threads"] is None else c["threads"]
            extra = f" {c['variant']}" if "variant" in c else ""
            extra += f" vs {c['floor']}" if c.get("floor") else ""
            lines.append(
                f"      {mark} {c['shape'][0]}x{c['shape'][1]} {c['dtype']} t={t_}{extra}: {shown}"
            )
    return "\n".join(lines)


def to_json(result) -> str:
    """Indented JSON with every list of plain numbers on one line (samples stay compact)."""
    text = json.dumps(result, indent=1)
    return (
        re.sub(
            r"\[\s+([-+0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
        )
        + "\n"
    )


def targets_markdown(result) -> str:
    """The targets of a run as Markdown (for ``bench/README.md``): status, worst check, checks."""
    git = result.get("git", {})
    load = result.get("load_average", {})
    during = [g["load"][0] for g in load.get("groups", [])] + [load.get("end", [None])[0]]
    during = [v for v in during if v is not None]
    isas = ", ".join(result["versions"]["native_isas"])
    commit = (git.get("commit") or "unknown")[:10]
    lines = [
        f"Run of {result['created']} on `{result['machine']['hostname']}` "
        f"({result['machine']['cpu_model']}, native ISAs {isas}), "
        f"commit `{commit}`, dirty: {str(git.get('dirty')).lower()}, "
        f"1-min load average {load.get('start', [0])[0]:.2f} at start"
        + (f", {min(during):.2f} to {max(during):.2f} during the run" if during else "")
        + f"; command `{' '.join(result['command'])}`.",
        "",
        "| target | status | worst check |",
        "|---|---|---|",
    ]
    for t in result["targets"]:
        w = t["worst"]
        worst = "not measured"
        if w is not None:
            thr = "default" if w["threads"] is None else w["threads"]
            worst = (
                f"{w['value']:.2f}x (needs {t['checks'][0]['relation']} {w['threshold']:.2f}x) at "
                f"{w['shape'][0]}x{w['shape'][1]} {w['dtype']}, threads {thr}"
            )
        lines.append(f"| {t['text']} | **{t['status']}** | {worst} |")
    lines.append("")
    for t in result["targets"]:
        lines.append(f"<details><summary>{t['id']}: every check</summary>")
        lines.append("")
        lines.append("| shape | dtype | threads | value (medians) | value (minima) | pass |")
        lines.append("|---|---|---|---:|---:|---|")
        for c in t["checks"]:
            thr = "default" if c["threads"] is None else c["threads"]
            what = f" {c['variant']}" if "variant" in c else ""
            what += f" (floor: {c['floor']})" if c.get("floor") else ""
            v = "-" if c["value"] is None else f"{c['value']:.2f}x"
            vm = "-" if c["value_from_min"] is None else f"{c['value_from_min']:.2f}x"
            ok = {True: "yes", False: "**no**", None: "-"}[c["pass"]]
            shape = f"{c['shape'][0]}x{c['shape'][1]}{what}"
            lines.append(f"| {shape} | {c['dtype']} | {thr} | {v} | {vm} | {ok} |")
        lines.append("")
        lines.append("</details>")
        lines.append("")
    control = result.get("control") or []
    if control:
        lines += [
            "Control (the same series alone in a fresh process, same rounds):",
            "",
            "| series | inside (us) | alone (us) | alone / inside | noise | agree |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for c in control:
            noise = max(c["inside_noise"], c["alone_noise"])
            lines.append(
                f"| {c['op']} {c['impl']} threads={c['threads']} {c['shape'][0]}x{c['shape'][1]} "
                f"{c['dtype']} | {c['inside_median_ns'] / 1e3:.1f} | "
                f"{c['alone_median_ns'] / 1e3:.1f} | {c['ratio']:.3f} | {noise:.3f} | "
                f"{'yes' if c['agree'] else '**no**'} |"
            )
        lines.append("")
    return "\n".join(lines)


README_BEGIN = "<!-- targets: begin (written by python -m bench.run) -->"
README_END = "<!-- targets: end -->"


def replace_between(text: str, body: str, begin: str = README_BEGIN, end: str = README_END) -> str:
    """``text`` with what lies between the ``begin`` and ``end`` marker lines set to ``body``."""
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"markers {begin!r} ... {end!r} not found in order")
    return text[: i + len(begin)] + "\n" + body.rstrip("\n") + "\n" + text[j:]
