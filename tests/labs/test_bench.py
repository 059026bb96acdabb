import json

import pytest
import torch

import labs.bench
from labs.bench import append_results, latest_run, load_results, median_ms, run_header


def test_median_ms_times_a_call():
    assert median_ms(lambda: sum(range(1000)), warmup=1, repeats=3) > 0
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        median_ms(lambda: None, repeats=0)


def test_load_results_checks_the_name():
    assert load_results("no_such_benchmark") == []
    with pytest.raises(ValueError, match="load_results: name must be"):
        load_results("../etc")


def test_latest_run_picks_the_newest_run_of_a_device_kind():
    records = [
        {"run_id": "a", "device_kind": "cuda", "x": 1},
        {"run_id": "b", "device_kind": "cuda", "x": 2},
        {"run_id": "b", "device_kind": "cuda", "x": 3},
        {"run_id": "c", "device_kind": "cpu", "x": 4},
    ]
    assert [r["x"] for r in latest_run(records)] == [2, 3]
    assert [r["x"] for r in latest_run(records, device_kind="cpu")] == [4]
    assert latest_run(records, device_kind="mps") == []


def test_device_name_is_readable():
    import torch

    from labs.bench import device_name

    name = device_name(torch.device("cpu"))
    assert name.endswith("cores") and len(name) > len(" cores")


def test_run_header_names_the_run_and_optionally_the_device():
    plain = run_header("demo")
    assert plain["benchmark"] == "demo" and len(plain["run_id"]) == 12 and "device" not in plain
    on_cpu = run_header("demo", torch.device("cpu"))
    assert on_cpu["device_kind"] == "cpu" and on_cpu["run_id"] != plain["run_id"]


def test_append_results_round_trips_through_load_results(tmp_path, monkeypatch):
    monkeypatch.setattr(labs.bench, "RESULTS_DIR", tmp_path / "results")
    append_results("demo", [{"run_id": "a", "x": 1}])
    append_results("demo", [{"run_id": "b", "x": 2}])
    assert [r["x"] for r in load_results("demo")] == [1, 2]
    with pytest.raises(ValueError, match="append_results: name must be"):
        append_results("a/b", [])


def _record(run_id, device_kind, **overrides):
    record = dict.fromkeys(labs.bench.RECORD_KEYS)
    record |= {
        "run_id": run_id, "benchmark": "rope", "date": "2026-11-23T10:00:00+00:00",
        "device": "NVIDIA H100 80GB HBM3" if device_kind == "cuda" else "AMD EPYC, 2 cores",
        "device_kind": device_kind, "kernel_path": "device cuda (auto); Triton kernels", "torch": "2.11.0",
        "triton": "triton 3.6.0", "labs_commit": "abc123", "threads": 1, "op": "apply_rope_qk",
        "shape": {"q": [4, 32, 4096, 128], "k": [4, 8, 4096, 128]}, "dtype": "bfloat16", "pass": "forward",
        "median_ms": 0.5, "anchor": "eager torch", "anchor_median_ms": 2.0, "gbps": 2500.0,
        "copy_gbps": 3000.0, "fraction_of_copy": 2500.0 / 3000.0, "params": {},
    }
    return record | overrides


def test_show_gpu_results_renders_the_latest_gpu_run(tmp_path):
    records = [
        _record("old", "cuda", device="NVIDIA A100", median_ms=9.0),
        _record("new", "cuda", median_ms=0.5),
        _record("new", "cuda", **{"pass": "fwd+bwd", "median_ms": 1.5, "anchor_median_ms": 3.0}),
        _record("cpu", "cpu", median_ms=70.0),
    ]
    (tmp_path / "rope.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    shown = labs.bench.show_gpu_results("rope", results_dir=tmp_path)
    text, page = repr(shown), shown._repr_html_()
    for where in (text, page):
        assert "NVIDIA H100 80GB HBM3" in where and "A100" not in where and "AMD EPYC" not in where
        assert "2026-11-23" in where and "2.11.0" in where and "triton 3.6.0" in where and "1 CPU thread" in where
        assert "q 4x32x4096x128, k 4x8x4096x128" in where and "eager torch" in where
        assert "83.3%" in where  # the fraction of copy bandwidth
        assert "0.25" in where and "0.5" in where  # ours/anchor of both passes
        assert "TFLOP/s" not in where  # no record has one: the column is left out
    assert page.count("<tr>") == 3 and "<table>" in page
    rows = text.splitlines()[-2:]
    assert rows[0].split()[:4] == ["apply_rope_qk", "q", "4x32x4096x128,", "k"] and "fwd+bwd" in rows[1]


def test_show_gpu_results_says_honestly_when_there_is_no_gpu_run(tmp_path):
    (tmp_path / "scan.jsonl").write_text(json.dumps(_record("cpu", "cpu")) + "\n")
    for results_dir in (tmp_path, tmp_path / "empty"):
        shown = labs.bench.show_gpu_results("scan", results_dir=results_dir)
        assert repr(shown) == ("No GPU run of benchmarks/scan.py is recorded yet: run `make bench` on a CUDA "
                               "machine to record one.")
        assert shown._repr_html_() == f"<p>{repr(shown)}</p>"


def test_show_gpu_results_refuses_a_name_that_is_not_a_benchmark(tmp_path, monkeypatch):
    monkeypatch.setattr(labs.bench, "RESULTS_DIR", tmp_path)
    for bad in ("ropee", "../rope", "", None, 3):
        with pytest.raises(ValueError, match="show_gpu_results: benchmark must be one of 'allreduce'"):
            labs.bench.show_gpu_results(bad)


def test_the_benchmark_names_are_the_scripts():
    scripts = {p.stem for p in (labs.bench.REPO_ROOT / "benchmarks").glob("*.py")} - {"run_all"}
    assert set(labs.bench.BENCHMARKS) == scripts
