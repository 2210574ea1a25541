"""softmax_grad.memory: the peak it reports is the arrays' bytes (known by construction)."""

import os
import tracemalloc

import numpy as np
import pytest

import softmax_grad as sg


def test_peak_counts_the_arrays_the_call_allocates():
    n = 1 << 20  # 8 MiB of float64, far above tracemalloc's small-object noise

    def two_live():
        a = np.ones(n)
        b = np.ones(n)
        return float(a[0] + b[0])

    got = sg.peak_memory(two_live)
    assert got.result == 2.0
    assert 2 * 8 * n <= got.peak_bytes <= 2 * 8 * n + (64 << 10), got.peak_bytes


def test_inputs_are_not_counted_and_freed_temporaries_do_not_add_up():
    x = np.ones(1 << 20)

    def one_at_a_time(x):
        for _ in range(5):
            t = x * 2.0  # one temporary live at a time
            del t
        return None

    peak = sg.peak_memory(one_at_a_time, x).peak_bytes
    assert x.nbytes <= peak <= 2 * x.nbytes, peak


def test_nested_measurement_is_refused():
    tracemalloc.start()
    try:
        with pytest.raises(RuntimeError, match="already tracing"):
            sg.peak_memory(lambda: None)
    finally:
        tracemalloc.stop()


def test_torch_peak_counts_live_tensors():
    torch = pytest.importorskip("torch")
    n = 1 << 20
    before = torch.ones(n, dtype=torch.float64)  # alive before the call: not counted

    def two_live_then_one():
        a = torch.ones(n, dtype=torch.float64)
        b = torch.ones(n, dtype=torch.float64)
        s = float((a + b)[0])  # a third tensor of n floats, briefly
        del a, b
        return s + float(torch.ones(n // 2, dtype=torch.float64)[0])

    got = sg.peak_memory_torch(two_live_then_one)
    assert got.result == 3.0
    assert 3 * 8 * n <= got.peak_bytes <= 3 * 8 * n + (64 << 10), got.peak_bytes
    assert before.numel() == n


def test_torch_profiler_log_lines_are_dropped_and_other_stderr_kept(capfd):
    torch = pytest.importorskip("torch")

    def noisy():
        os.write(2, b"a message of the call itself\n")
        return torch.ones(4)

    sg.peak_memory_torch(noisy)
    err = capfd.readouterr().err
    assert "a message of the call itself" in err
    assert "profiler_start" not in err and "SyncActivityProfilerHandler" not in err
