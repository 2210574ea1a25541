"""Smoke tests of the benchmark harness (bench/run.py): schema, bytes formula, target logic.

A ``--quick`` run on the 1x10 shape, NumPy and native only (no PyTorch), into a temporary
directory. The native module is a hard dependency: if it does not import, these tests fail.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "bench" / "run.py"

# Bytes per call, from the definitions in issue 4: the VJP reads y and dy and writes dx, softmax
# reads x and writes y, the floor reads a and b and writes c.
STREAMS = {"vjp": 3, "softmax": 2, "floor": 3}


def load_harness():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    from softmax_grad import native  # must import: the benchmark is about it

    out = tmp_path_factory.mktemp("bench") / "result.json"
    cmd = [sys.executable, str(RUN), "--quick", "--shapes", "1x10", "--no-torch", "--quiet"]
    proc = subprocess.run(
        [*cmd, "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout, tuple(native.isas())


def test_top_level_fields(quick_result):
    r, stdout, isas = quick_result
    for key in ("schema", "created", "machine", "versions", "config", "method", "cases", "targets"):
        assert key in r, key
    m = r["machine"]
    assert m["hostname"] and m["cpu_model"] and m["cpu_count"] >= 1
    assert set(m["flags"]) >= {"avx2", "fma", "avx512f"}
    assert all(isinstance(v, bool) for v in m["flags"].values())
    v = r["versions"]
    assert v["numpy"] == np.__version__
    assert v["native_isas"] == list(isas) and "scalar" in isas
    assert v["torch"] is None and any("PyTorch" in n for n in r["notes"])
    assert "targets" in stdout and "vjp" in stdout


def test_every_series_measured_once(quick_result):
    r, _, isas = quick_result
    got = sorted(
        (c["op"], c["impl"], str(c["isa"]), str(c["threads"]), c["variant"], c["dtype"])
        for c in r["cases"]
    )
    want = []
    for dtype in ("float32", "float64"):
        for op in ("vjp", "softmax"):
            want.append((op, "numpy", "None", "1", "alloc", dtype))
            want.append((op, "native", "None", "None", "alloc", dtype))  # the whole call
            want += [(op, "native", i, str(t), "out", dtype) for i in isas for t in (1, 2)]
        want += [("floor", "floor", "None", str(t), "out", dtype) for t in (1, 2)]
        want.append(("floor", "numpy", "None", "1", "out", dtype))  # np.add cross-check
        # the least a cffi binding pays per call, at shapes with one row
        want += [("vjp", "cffi-minimum", "None", "1", v, dtype) for v in ("alloc", "out")]
    assert got == sorted(want)


def test_case_numbers(quick_result):
    r, _, _ = quick_result
    for c in r["cases"]:
        rows, n = c["shape"]
        assert (rows, n) == (1, 10)
        assert c["bytes"] == STREAMS[c["op"]] * rows * n * np.dtype(c["dtype"]).itemsize
        assert 0 < c["min_ns"] <= c["median_ns"]
        assert len(c["samples_ns"]) == c["rounds"] >= 3 and c["calls_per_sample"] >= 1
        assert c["median_ns"] == pytest.approx(float(np.median(c["samples_ns"])), rel=1e-3)
        assert c["gbps"] == pytest.approx(c["bytes"] / c["median_ns"])
        assert c["check_ok"] is True, c


def test_targets_section(quick_result):
    r, _, _ = quick_result
    by_id = {t["id"]: t for t in r["targets"]}
    # Without PyTorch its targets are left out; the rest are present.
    assert set(by_id) == {"vjp_vs_floor", "whole_call_1x10", "vjp_vs_numpy_1024"}
    # Only 1x10 was measured, so the whole-call target is decided and the others are not.
    whole = by_id["whole_call_1x10"]
    assert whole["status"] in ("PASS", "FAIL") and len(whole["checks"]) == 2
    assert by_id["vjp_vs_numpy_1024"]["status"] == "N/A"


def _case(op, impl, median, shape=(1024, 1024), dtype="float32", threads=1, isa=None, v="out"):
    return {
        "op": op,
        "impl": impl,
        "isa": isa,
        "shape": list(shape),
        "dtype": dtype,
        "threads": threads,
        "variant": v,
        "median_ns": median,
        "min_ns": 0.9 * median,
    }


def test_target_logic_on_made_up_numbers():
    run = load_harness()
    shape = (1024, 1024)
    cases = [
        _case("vjp", "native", 100.0, isa="avx2"),
        _case("vjp", "native", 999.0, isa="scalar"),  # not the dispatched ISA: ignored
        _case("floor", "floor", 95.0),  # native gets 0.95 of the floor -> pass
        _case("vjp", "numpy", 400.0, v="alloc"),  # 4x, below the 5x target -> fail
        _case("vjp", "torch", 100.0),  # a tie is "never slower" -> pass
        _case("softmax", "native", 200.0, isa="avx2"),
        _case("softmax", "torch", 150.0),  # torch faster -> fail
    ]
    targets = run.evaluate_targets(cases, ("scalar", "avx2"), [shape], ["float32"], [1], True)
    status = {t["id"]: t["status"] for t in targets}
    assert status["vjp_vs_floor"] == "PASS"
    assert status["vjp_vs_numpy_1024"] == "FAIL"
    assert status["vjp_vs_torch"] == "PASS"
    assert status["softmax_vs_torch_1024"] == "FAIL"
    assert status["whole_call_1x10"] == "N/A"
    floor = next(t for t in targets if t["id"] == "vjp_vs_floor")["checks"][0]
    assert floor["value"] == pytest.approx(0.95)


def test_floor_is_the_fastest_add_with_at_most_as_many_threads():
    run = load_harness()
    shape = (1024, 1024)
    cases = [
        _case("vjp", "native", 100.0, isa="avx2", threads=1),
        _case("vjp", "native", 60.0, isa="avx2", threads=2),
        _case("floor", "floor", 95.0, threads=1),
        _case("floor", "floor", 70.0, threads=2),
        _case("floor", "numpy", 80.0, threads=1),  # np.add beats the native floor on 1 thread
    ]
    ix = run.Index(cases)
    assert run.floor_case(ix, shape, "float32", 1)["median_ns"] == 80.0
    assert run.floor_case(ix, shape, "float32", 2)["median_ns"] == 70.0
    targets = run.evaluate_targets(cases, ("scalar", "avx2"), [shape], ["float32"], [1, 2], False)
    checks = next(t for t in targets if t["id"] == "vjp_vs_floor")["checks"]
    assert [c["value"] for c in checks] == [pytest.approx(0.8), pytest.approx(70 / 60)]
    assert [c["pass"] for c in checks] == [False, True]
