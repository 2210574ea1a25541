"""softmax_grad.timing: counts, warm-up and interleaving (never a performance target)."""

import os
import subprocess
import time

import numpy as np
import pytest

from softmax_grad import WARM_HEAP, allocator_share, run_fresh, time_call
from softmax_grad import timing as timing_module


def test_time_call_counts_calls_and_passes_arguments():
    calls = []

    def fn(a, b=0):
        calls.append((a, b))

    t = time_call(fn, 1, b=2, repeat=3, number=4, warmup=2)
    assert calls == [(1, 2)] * (2 + 3 * 4)
    assert t.number == 4 and len(t.samples) == 3
    assert t.best == min(t.samples) <= t.median <= max(t.samples)


def test_time_call_measures_seconds_per_call():
    # A sleep is a lower bound on the time of a call whatever the machine's load.
    t = time_call(time.sleep, 0.002, repeat=2, number=3, warmup=0)
    assert t.best >= 0.002


def test_auto_number_reaches_the_sample_target(monkeypatch):
    # A fake clock that advances exactly 1 ms per call of fn: the result cannot depend on load.
    now = [0.0]

    def fn():
        now[0] += 0.001

    monkeypatch.setattr(timing_module, "_clock", lambda: now[0])
    monkeypatch.setattr(timing_module, "SAMPLE_SECONDS", 0.005)
    t = time_call(fn, repeat=3, warmup=0)
    # 1 call takes 1 ms < 5 ms; the estimate then asks for 5 calls, which reach the target
    assert t.number == 5
    assert t.samples == pytest.approx((0.001, 0.001, 0.001))
    monkeypatch.setattr(timing_module, "SAMPLE_SECONDS", 0.5)
    assert time_call(fn, repeat=1, warmup=0).number >= 500  # grows by at most 100x per step


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"repeat": 0}, "repeat"), ({"number": 0}, "number"), ({"warmup": -1}, "warmup")],
)
def test_bad_counts_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_call(lambda: None, **kwargs)


def test_not_callable_is_named():
    with pytest.raises(TypeError, match="fn must be callable"):
        time_call(3)
    with pytest.raises(TypeError, match="preallocated"):
        allocator_share(lambda: None, None)


def test_allocator_share_interleaves_and_reports_difference():
    order = []
    a = np.ones(1000)
    out = np.empty_like(a)
    share = allocator_share(
        lambda: order.append("A") or a * 2.0,
        lambda: order.append("P") or np.multiply(a, 2.0, out=out),
        repeat=3,
        number=2,
        warmup=1,
    )
    assert order == ["A", "P"] + ["A", "A", "P", "P"] * 3
    assert share.seconds == share.allocating.best - share.preallocated.best
    assert share.share == pytest.approx(share.seconds / share.allocating.best)


def test_run_fresh_passes_args_and_environment_to_a_new_interpreter():
    script = "import os, sys; print(os.getpid(), os.environ.get('MALLOC_TOP_PAD_'), *sys.argv[1:])"
    pid, pad, *args = run_fresh(script, "a", "b", env=WARM_HEAP).split()
    assert int(pid) != os.getpid()
    assert pad == str(2**30)
    assert args == ["a", "b"]
    assert run_fresh(script).split()[1] == str(os.environ.get("MALLOC_TOP_PAD_"))


def test_run_fresh_raises_when_the_script_fails():
    with pytest.raises(subprocess.CalledProcessError):
        run_fresh("raise SystemExit(3)")
