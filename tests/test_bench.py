"""The benchmark harness: the pure functions of bench.results on made-up numbers, and a smoke run.

Expected values are worked out by hand from the made-up medians in each test, not by the code
under test. The smoke run is ``python -m bench.run --quick`` on the 1x10 shape, NumPy and
native only (no PyTorch), into a temporary directory; the native module must import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import measure, results

REPO = Path(__file__).resolve().parents[1]

# Bytes per call, from the definitions: the VJP reads y and dy and writes dx, softmax reads x
# and writes y, the floor reads a and b and writes c.
STREAMS = {"vjp": 3, "softmax": 2, "floor": 3}


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
        "min_ns": 0.5 * median,
        "gbps": 3 * shape[0] * shape[1] * 4 / median,
    }


# ---- pure functions ---------------------------------------------------------------------------


def test_floor_is_the_fastest_add_with_at_most_as_many_threads():
    s = (1024, 1024)
    cases = [
        _case("floor", "floor", 95.0, threads=1),
        _case("floor", "floor", 70.0, threads=2),
        _case("floor", "numpy", 80.0, threads=1),  # np.add beats stream_add on 1 thread
        _case("floor", "torch", 90.0, threads=1),
        _case("floor", "torch", 65.0, threads=2),  # torch.add on 2 threads beats all
    ]
    ix = results.Index(cases)
    one, two = results.floor_case(ix, s, "float32", 1), results.floor_case(ix, s, "float32", 2)
    assert (one["impl"], one["median_ns"]) == ("numpy", 80.0)
    assert (two["impl"], two["threads"], two["median_ns"]) == ("torch", 2, 65.0)
    # A 2-thread candidate never becomes the 1-thread floor.
    assert results.floor_case(results.Index(cases[1:2]), s, "float32", 1) is None
    # A 1-thread candidate may be the 2-thread floor ("at most as many threads").
    only_one = [_case("floor", "floor", 50.0, threads=1), _case("floor", "floor", 60.0, threads=2)]
    assert results.floor_case(results.Index(only_one), s, "float32", 2)["median_ns"] == 50.0
    chosen = results.floor_choices(cases, [s], ["float32"], [1, 2])
    assert [(f["threads"], f["name"], f["impl_threads"]) for f in chosen] == [
        (1, "np.add", 1),
        (2, "torch.add", 2),
    ]
    assert results.floor_of(chosen, s, "float32", 2)["median_ns"] == 65.0
    assert results.floor_of(chosen, s, "float64", 2) is None


def test_shape_rules():
    assert results.batched((64, 10)) and results.batched((4096, 4096))
    assert not results.batched((1, 1000)) and not results.batched((32, 1000))
    assert results.at_least((1024, 1024), 1024, 1024) and results.at_least((256, 32000), 1024, 1024)
    assert not results.at_least((64, 1000), 1024, 1024)
    assert results.at_least((64, 1000), 64, 1000) and not results.at_least((64, 10), 64, 1000)


def _status(targets):
    return {t["id"]: t["status"] for t in targets}


def test_targets_on_made_up_numbers():
    big, huge, one = (1024, 1024), (4096, 4096), (1, 10)
    nat = "avx2"
    cases = [
        # 1024x1024: VJP 100 ns; torch 110 -> 1.10 >= 1.0; floor 92 -> 0.92 >= 0.9
        _case("vjp", "native", 100.0, big, isa=nat),
        _case("vjp", "native", 999.0, big, isa="scalar"),  # not the dispatched ISA: ignored
        _case("vjp", "torch", 110.0, big),
        _case("floor", "floor", 92.0, big),
        # 4096x4096: torch 115 / native 100 = 1.15: >= 1.0 passes, >= 1.2 fails
        _case("vjp", "native", 100.0, huge, isa=nat),
        _case("vjp", "torch", 115.0, huge),
        _case("floor", "numpy", 85.0, huge),  # 0.85 < 0.9: fails
        # softmax: torch 90 / native 100 = 0.9 at 1024x1024 -> fails; 4096 passes
        _case("softmax", "native", 100.0, big, isa=nat),
        _case("softmax", "torch", 90.0, big),
        _case("softmax", "native", 100.0, huge, isa=nat),
        _case("softmax", "torch", 100.0, huge),  # a tie is "at least as fast"
        # validation at 1x10 float32: 1140/1000 = 1.14 <= 1.15 passes, 1160/1000 fails
        _case("vjp", "native", 1140.0, one, threads=None, v="alloc"),
        _case("vjp", "cffi-minimum", 1000.0, one, v="alloc"),
        _case("vjp", "native", 1160.0, one, threads=None, v="out"),
        _case("vjp", "cffi-minimum", 1000.0, one, v="out"),
    ]
    # bfloat16 VJP: torch 95 / native 100 at 64x1000 (0.95 < 1.0 fails), 120 / 100 at 1024x1024
    small = (64, 1000)
    cases += [
        _case("vjp", "native", 100.0, small, "bfloat16", isa=nat),
        _case("vjp", "torch", 95.0, small, "bfloat16"),
        _case("vjp", "native", 100.0, big, "bfloat16", isa=nat),
        _case("vjp", "torch", 120.0, big, "bfloat16"),
    ]
    targets = results.evaluate_targets(
        cases, ("scalar", nat), [one, big, huge], ["float32"], [1], [(64, 10), small, big]
    )
    by_id = {t["id"]: t for t in targets}
    assert _status(targets) == {
        "vjp_vs_torch": "PASS",
        "vjp_vs_torch_4096": "FAIL",
        "vjp_vs_floor": "FAIL",
        "vjp_vs_torch_bf16": "FAIL",
        "softmax_vs_torch": "FAIL",
        "validation_overhead": "FAIL",
    }
    # 64x10 is below 64x1000: left out; the others as computed above
    bf16 = by_id["vjp_vs_torch_bf16"]["checks"]
    assert [(c["shape"], c["dtype"]) for c in bf16] == [
        ([64, 1000], "bfloat16"),
        ([1024, 1024], "bfloat16"),
    ]
    assert [c["value"] for c in bf16] == [pytest.approx(0.95), pytest.approx(1.20)]
    assert by_id["vjp_vs_torch_bf16"]["worst"]["value"] == pytest.approx(0.95)
    # 1x10 is a per-call shape: the torch target leaves it out.
    assert [c["shape"] for c in by_id["vjp_vs_torch"]["checks"]] == [[1024, 1024], [4096, 4096]]
    assert [c["value"] for c in by_id["vjp_vs_torch"]["checks"]] == [
        pytest.approx(1.10),
        pytest.approx(1.15),
    ]
    floor = by_id["vjp_vs_floor"]["checks"]
    assert [c["value"] for c in floor] == [pytest.approx(0.92), pytest.approx(0.85)]
    assert [c["floor"] for c in floor] == ["native.stream_add t=1", "np.add t=1"]
    assert by_id["vjp_vs_floor"]["worst"]["value"] == pytest.approx(0.85)
    val = by_id["validation_overhead"]["checks"]
    assert [(c["variant"], c["pass"]) for c in val] == [("alloc", True), ("out", False)]
    assert [c["value"] for c in val] == [pytest.approx(1.14), pytest.approx(1.16)]
    assert by_id["validation_overhead"]["worst"]["value"] == pytest.approx(1.16)
    # value_from_min: both minima are half the medians here, so the same ratio.
    assert val[0]["value_from_min"] == pytest.approx(1.14)


def test_a_target_with_a_missing_case_is_not_decided():
    big = (1024, 1024)
    cases = [_case("vjp", "native", 100.0, big, isa="avx2")]  # no torch, no floor
    targets = results.evaluate_targets(cases, ("avx2",), [big], ["float32"], [1, 2])
    assert set(_status(targets).values()) == {"N/A"}
    check = targets[0]["checks"][0]
    assert check["value"] is None and check["pass"] is None


def test_agreement():
    inside = [100.0, 102.0, 98.0, 101.0, 99.0]  # median 100, q25 99, q75 101: noise 0.02
    close = [101.0, 101.5, 100.5, 101.0, 101.0]  # median 101: ratio 1.01, within 0.02
    far = [110.0, 110.0, 110.0, 110.0, 110.0]  # median 110: ratio 1.10, noise 0
    a = results.agreement(inside, close)
    assert a["ratio"] == pytest.approx(1.01) and a["inside_noise"] == pytest.approx(0.02)
    assert a["agree"] is True
    b = results.agreement(inside, far)
    assert b["ratio"] == pytest.approx(1.10) and b["alone_noise"] == 0.0 and b["agree"] is False
    # Constant samples: every bootstrap median is the constant, so the interval is a point.
    c = results.agreement([100.0] * 5, [110.0] * 5)
    assert c["ratio_ci95"] == [pytest.approx(1.10), pytest.approx(1.10)]
    assert a["ratio_ci95"][0] <= a["ratio"] <= a["ratio_ci95"][1]


def test_plan_separates_peers_by_process():
    isas = ("scalar", "avx2")
    ours1 = measure.plan_series((1, 10), isas, "ours-1")
    ours2 = measure.plan_series((1, 10), isas, "ours-2")
    torch2 = measure.plan_series((1024, 1024), isas, "torch-2")
    assert {s.impl for s in torch2} == {"torch"} and {s.threads for s in torch2} == {2}
    assert all(s.impl != "torch" for s in ours1 + ours2)
    assert {s.threads for s in ours2} == {2}  # the 2-thread worker runs only 2-thread series
    assert {s.threads for s in ours1} == {1, None}
    assert ("vjp", "cffi-minimum", None, 1, "out") in {s.key for s in ours1}
    jax_plan = measure.plan_series((64, 10), isas, "jax")
    assert {s.key for s in jax_plan} == {
        (op, "jax", None, None, "alloc") for op in ("vjp", "softmax")
    }
    assert measure.worker_names((1, 2), True, True)[-1] == "jax"
    assert measure.plan_series((64, 1000), isas, "jax", "bfloat16") == []
    # bfloat16: the VJP only, and no floor or cffi minimum (both are float32/float64 only)
    half1 = measure.plan_series((64, 1000), isas, "ours-1", "bfloat16")
    assert {s.key for s in half1} == {("vjp", "numpy", None, 1, "alloc")} | {
        ("vjp", "native", i, 1, "out") for i in isas
    }
    assert {s.key for s in measure.plan_series((64, 1000), isas, "torch-2", "bfloat16")} == {
        ("vjp", "torch", None, 2, "out")
    }
    with pytest.raises(ValueError, match="ours-<threads>"):
        measure.parse_worker("jax-1")


# ---- a quick smoke run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    from softmax_grad import native  # must import: the benchmark is about it

    out = tmp_path_factory.mktemp("bench") / "result.json"
    cmd = [sys.executable, "-m", "bench.run", "--quick", "--shapes", "1x10", "--no-torch"]
    cmd += ["--no-jax", "--bf16-shapes", "64x10"]  # a small bfloat16 group (the VJP only)
    proc = subprocess.run(
        [*cmd, "--quiet", "--control", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout, tuple(native.isas())


def test_top_level_fields(quick_result):
    r, stdout, isas = quick_result
    for key in ("schema", "created", "machine", "versions", "config", "method", "cases"):
        assert key in r, key
    assert {"floors", "targets", "control", "load_average", "git"} <= set(r)
    m = r["machine"]
    assert m["hostname"] and m["cpu_model"] and m["cpu_count"] >= 1
    assert set(m["flags"]) >= {"avx2", "fma", "avx512f"}
    v = r["versions"]
    assert v["numpy"] == np.__version__
    assert v["native_isas"] == list(isas) and "scalar" in isas
    assert v["torch"] is None and any("PyTorch" in n for n in r["notes"])
    assert v["jax"] is None and any("JAX left out" in n for n in r["notes"])
    assert r["config"]["workers"] == ["ours-1", "ours-2"]
    assert len(r["load_average"]["start"]) == 3 and len(r["load_average"]["groups"]) == 3
    assert r["config"]["bf16_shapes"] == [[64, 10]]
    assert isinstance(r["git"]["dirty"], bool)
    assert "targets" in stdout and "vjp" in stdout


def test_every_series_measured_once_by_its_worker(quick_result):
    r, _, isas = quick_result
    got = sorted(
        (
            c["op"],
            c["impl"],
            str(c["isa"]),
            str(c["threads"]),
            c["variant"],
            c["dtype"],
            c["worker"],
        )
        for c in r["cases"]
    )
    want = []
    for dtype in ("float32", "float64"):
        for op in ("vjp", "softmax"):
            want.append((op, "numpy", "None", "1", "alloc", dtype, "ours-1"))
            want += [
                (op, "native", i, str(t), "out", dtype, f"ours-{t}") for i in isas for t in (1, 2)
            ]
        want.append(("softmax", "native", "None", "None", "alloc", dtype, "ours-1"))
        want += [("vjp", "native", "None", "None", v, dtype, "ours-1") for v in ("alloc", "out")]
        want += [("vjp", "cffi-minimum", "None", "1", v, dtype, "ours-1") for v in ("alloc", "out")]
        want += [("floor", "floor", "None", str(t), "out", dtype, f"ours-{t}") for t in (1, 2)]
        want.append(("floor", "numpy", "None", "1", "out", dtype, "ours-1"))
    want.append(("vjp", "numpy", "None", "1", "alloc", "bfloat16", "ours-1"))
    want += [
        ("vjp", "native", i, str(t), "out", "bfloat16", f"ours-{t}") for i in isas for t in (1, 2)
    ]
    assert got == sorted(want)


def test_case_numbers(quick_result):
    r, _, _ = quick_result
    assert r["cases"], "the quick run recorded no series"
    for c in r["cases"]:
        rows, n = c["shape"]
        assert (rows, n) == ((64, 10) if c["dtype"] == "bfloat16" else (1, 10))
        itemsize = {"float32": 4, "float64": 8, "bfloat16": 2}[c["dtype"]]
        assert c["bytes"] == STREAMS[c["op"]] * rows * n * itemsize
        assert 0 < c["min_ns"] <= c["median_ns"]
        assert len(c["samples_ns"]) == c["rounds"] >= 4 and c["calls_per_sample"] >= 1
        assert c["median_ns"] == pytest.approx(float(np.median(c["samples_ns"])), rel=1e-3)
        assert c["gbps"] == pytest.approx(c["bytes"] / c["median_ns"])
        assert c["check_ok"] is True, c


def test_floors_targets_and_control_recorded(quick_result):
    r, _, _ = quick_result
    # One floor per (shape, dtype, threads), the fastest add with at most that many threads.
    assert sorted((f["dtype"], f["threads"]) for f in r["floors"]) == [
        ("float32", 1),
        ("float32", 2),
        ("float64", 1),
        ("float64", 2),
    ]
    for f in r["floors"]:
        adds = [
            c["median_ns"]
            for c in r["cases"]
            if c["op"] == "floor" and c["dtype"] == f["dtype"] and c["threads"] <= f["threads"]
        ]
        assert f["median_ns"] == min(adds)
    by_id = {t["id"]: t for t in r["targets"]}
    # Only 1x10 was measured without PyTorch: only the validation target is decided.
    assert by_id["validation_overhead"]["status"] in ("PASS", "FAIL")
    assert len(by_id["validation_overhead"]["checks"]) == 4
    assert all(by_id[k]["status"] == "N/A" for k in by_id if k != "validation_overhead")
    # The control measures the native VJP alone at the run's largest shape, same rounds.
    control = r["control"]
    assert {(c["impl"], c["threads"]) for c in control} == {("native", 1), ("native", 2)}
    for c in control:
        inside = next(
            x
            for x in r["cases"]
            if (x["op"], x["impl"], x["isa"], x["threads"], x["dtype"], x["variant"])
            == (c["op"], c["impl"], c["isa"], c["threads"], "float32", "out")
        )
        assert c["inside_median_ns"] == pytest.approx(inside["median_ns"], rel=1e-4)  # 0.01 ns
        assert len(c["alone_samples_ns"]) == inside["rounds"] == c["rounds"]
        assert isinstance(c["agree"], bool)


def test_readme_section_is_replaced_between_its_markers():
    text = f"head\n{results.README_BEGIN}\nold\nlines\n{results.README_END}\ntail\n"
    new = results.replace_between(text, "new body\n")
    assert new == f"head\n{results.README_BEGIN}\nnew body\n{results.README_END}\ntail\n"
    with pytest.raises(ValueError, match="markers"):
        results.replace_between("no markers here", "x")


def test_targets_markdown_names_status_and_worst_check():
    big = (1024, 1024)
    cases = [
        _case("vjp", "native", 100.0, big, isa="avx2"),
        _case("floor", "floor", 80.0, big),  # 0.80 < 0.9
    ]
    r = {
        "created": "2026-01-01T00:00:00+00:00",
        "command": ["python", "-m", "bench.run"],
        "machine": {"hostname": "h", "cpu_model": "cpu"},
        "versions": {"native_isas": ["scalar", "avx2"]},
        "git": {"commit": "0123456789abcdef", "dirty": False},
        "load_average": {"start": [0.1, 0.1, 0.1], "groups": [], "end": [0.2, 0.1, 0.1]},
        "targets": results.evaluate_targets(cases, ("scalar", "avx2"), [big], ["float32"], [1]),
    }
    text = results.targets_markdown(r)
    assert "dirty: false" in text and "`0123456789`" in text
    floor_line = next(line for line in text.splitlines() if "the floor" in line)
    assert "**FAIL**" in floor_line and "0.80x (needs >= 0.90x) at 1024x1024 float32" in floor_line


def test_accurate_cost_ratios_on_made_up_numbers():
    from bench import accurate_cost

    base = {"shape": [2, 3], "dtype": "float32", "kind": "bench", "confident_rows": 0.0}
    cases = [
        {
            **base,
            "impl": "native",
            "threads": "1",
            "accurate": False,
            "median_ns": 100.0,
            "min_ns": 80.0,
        },
        {
            **base,
            "impl": "native",
            "threads": "1",
            "accurate": True,
            "median_ns": 150.0,
            "min_ns": 100.0,
        },
    ]
    (r,) = accurate_cost.ratios(cases)
    assert r["ratio"] == 1.5 and r["ratio_of_minima"] == 1.25


def test_accurate_cost_quick_run(tmp_path):
    from bench import accurate_cost

    out = tmp_path / "cost.json"
    assert accurate_cost.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    kinds = {(r["kind"], r["impl"], r["threads"], r["dtype"]) for r in result["ratios"]}
    assert len(kinds) == 2 * 3 * 2  # bench/confident x numpy, native t1, native default x dtypes
    confident = {r["kind"]: r["confident_rows"] for r in result["ratios"]}
    assert confident == {"bench": 0.0, "confident": 1.0}  # the two kinds are what they claim
    assert all(r["ratio"] > 0 for r in result["ratios"])


def _scale_case(op, impl, shape, t, ns):
    return {"op": op, "impl": impl, "shape": list(shape), "threads": t, "median_ns": ns}


def test_at_scale_floor_ratios_and_targets_on_made_up_numbers():
    from bench import at_scale

    big, small = (256, 32000), (64, 1000)
    cases = [
        _scale_case("floor", "numpy", big, 1, 100.0),
        _scale_case("floor", "torch", big, 1, 120.0),
        _scale_case("floor", "torch", big, 2, 80.0),  # 2 threads: the floor takes the faster
        _scale_case("softmax", "online", big, 1, 125.0),
        _scale_case("softmax", "multipass", big, 1, 200.0),
        _scale_case("softmax", "online", big, 2, 100.0),
        _scale_case("softmax", "multipass", big, 2, 90.0),
        _scale_case("cross_entropy", "native", small, 1, 100.0),
        _scale_case("cross_entropy", "torch", small, 1, 150.0),
        _scale_case("cross_entropy", "native", small, 2, 100.0),
        _scale_case("cross_entropy", "torch", small, 2, 110.0),
    ]
    table = {(tuple(r["shape"]), r["threads"]): r for r in at_scale.ratios(cases)}
    assert table[big, 1]["floor_ratio_online"] == 0.8  # 100 / 125: numpy's copy is the floor
    assert table[big, 1]["floor_ratio_multipass"] == 0.5
    assert table[big, 2]["floor_ratio_online"] == 0.8  # 80 / 100: torch at 2 threads
    assert table[small, 1]["vs_torch_cross_entropy"] == 1.5
    assert table[small, 1]["floor_ratio_online"] is None  # not measured: no ratio
    decided = {d["id"]: d for d in at_scale.targets(list(table.values()), "online")}
    assert decided["forward_vs_floor"]["status"] == "PASS"  # 0.8 and 0.8: at the limit
    ce = decided["cross_entropy_vs_torch"]
    assert ce["status"] == "FAIL" and ce["failing"] == 1 and ce["checks"] == 2
    assert ce["worst"] == {"value": 1.1, "shape": [64, 1000], "threads": 2}
    multipass = {d["id"]: d for d in at_scale.targets(list(table.values()), "multipass")}
    assert multipass["forward_vs_floor"]["status"] == "FAIL"  # 0.5 at 1 thread


def test_at_scale_quick_run(tmp_path):
    from bench import at_scale

    out = tmp_path / "scale.json"
    assert at_scale.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    got = {(c["op"], c["impl"], c["threads"]) for c in result["cases"]}
    for t in (1, 2):
        for impl in ("online", "multipass", "torch", "default-alloc"):
            assert ("softmax", impl, t) in got
        assert ("cross_entropy", "native", t) in got and ("cross_entropy", "torch", t) in got
    assert ("floor", "numpy", 1) in got and ("floor", "numpy", 2) not in got
    assert all(c["median_ns"] > 0 and c["rounds"] == 2 for c in result["cases"])
    assert {d["id"] for d in result["targets"]} == {"forward_vs_floor", "cross_entropy_vs_torch"}


def test_git_info_ignores_what_benchmarks_write():
    from bench import measure

    assert measure._benchmark_output("bench/results/latest.json")
    assert measure._benchmark_output("bench/README.md")
    assert not measure._benchmark_output("bench/measure.py")
    assert not measure._benchmark_output("csrc/kernels_simd.h")
    info = measure.git_info()
    assert info["dirty"] == any(not measure._benchmark_output(p) for p in info["changed"])
