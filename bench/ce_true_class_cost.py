"""Cost of softmax_cross_entropy's accurate true class, y_k - 1 = -sum_{j != k} y_j, against
the direct y - onehot: the same function with the sum of the other entries replaced by
total = sum(e) and y_k - 1 computed by subtraction. Min over alternated repeats (order rotated),
1 thread, at 64x1000 and 1024x1024, float32 and float64, rows of N(0, 1) logits with random
labels and confident rows (8 N(0, 1) logits, label = argmax).

Usage (repository root): OMP_NUM_THREADS=1 python bench/ce_true_class_cost.py [repeat]
"""

from __future__ import annotations

import inspect
import sys
import textwrap

import numpy as np

import softmax_grad as sg
import softmax_grad.losses as losses

SUM_OF_OTHERS = """            np.put_along_axis(e, idx, 0, axis=-1)
            rest = np.sum(e, axis=-1)
            total = (rest + e_k)[..., None]
"""
DIRECT_TOTAL = """            total = np.sum(e, axis=-1, keepdims=True)
"""
REWRITTEN = """        p_k, a_k = e_k / t_, -rest / t_
"""
DIRECT = """        p_k = e_k / t_
        a_k = p_k - 1
"""


def _direct_variant():
    source = textwrap.dedent(inspect.getsource(losses.softmax_cross_entropy))
    for old in (SUM_OF_OTHERS, REWRITTEN):
        if source.count(old) != 1:
            raise SystemExit("softmax_cross_entropy changed: update this script's patterns")
    source = source.replace(SUM_OF_OTHERS, DIRECT_TOTAL).replace(REWRITTEN, DIRECT)
    namespace = dict(vars(losses))
    exec(compile(source, "direct softmax_cross_entropy", "exec"), namespace)
    return namespace["softmax_cross_entropy"]


def main(repeat: int) -> None:
    variants = {"sum of others": losses.softmax_cross_entropy, "direct": _direct_variant()}
    rng = np.random.default_rng(0)
    head = ("shape", 10), ("dtype", 8), ("rows", 10), ("others us", 10), ("direct us", 10)
    print(" ".join(f"{name:>{width}}" for name, width in head), f"{'ratio':>6}")
    for rows, n in ((64, 1000), (1024, 1024)):
        for dtype in (np.float32, np.float64):
            for kind, scale in (("normal", 1.0), ("confident", 8.0)):
                x = (scale * rng.standard_normal((rows, n))).astype(dtype)
                confident = kind == "confident"
                labels = np.argmax(x, axis=-1) if confident else rng.integers(0, n, rows)
                best = dict.fromkeys(variants, np.inf)
                names = list(variants)
                for r in range(repeat):
                    for name in names[r % 2 :] + names[: r % 2]:
                        t = sg.time_call(variants[name], x, labels, repeat=1).best
                        best[name] = min(best[name], t)
                a, b = best["sum of others"], best["direct"]
                shape = f"{rows}x{n}"
                print(
                    f"{shape:>10} {np.dtype(dtype).name:>8} {kind:>10} {a * 1e6:10.1f} "
                    f"{b * 1e6:10.1f} {a / b:6.3f}"
                )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 41)
