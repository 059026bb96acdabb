import importlib.util
import json

import pytest
import torch

import labs.bench
from labs.bench import append_results, latest_run, load_results, median_ms, run_header

BENCHMARK_DIR = labs.bench.REPO_ROOT / "benchmarks"


def test_median_ms_times_a_call():
    calls = []
    assert median_ms(lambda: calls.append(sum(range(1000))), warmup=2, repeats=3) > 0
    assert len(calls) == 5  # the warm-up calls run, untimed
    assert median_ms(lambda: None, warmup=0, repeats=1, device="cpu") >= 0
    with pytest.raises(ValueError, match="median_ms: repeats must be a positive int, got 0"):
        median_ms(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="median_ms: warmup must be an int >= 0, got -1"):
        median_ms(lambda: None, warmup=-1)


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


def test_run_header_is_the_start_of_a_record():
    first, second = run_header("demo", torch.device("cpu"), 3), run_header("demo", torch.device("cpu"), 3)
    assert tuple(first) == labs.bench.RECORD_KEYS[: len(first)] and first["threads"] == 3
    assert first["benchmark"] == "demo" and first["device_kind"] == "cpu" and len(first["run_id"]) == 12
    assert first["run_id"] != second["run_id"]


def test_append_results_round_trips_through_load_results(tmp_path, monkeypatch):
    monkeypatch.setattr(labs.bench, "RESULTS_DIR", tmp_path / "results")
    append_results("demo", [{"run_id": "a", "x": 1}])
    append_results("demo", [{"run_id": "b", "x": 2}])
    assert [r["x"] for r in load_results("demo")] == [1, 2]
    append_results("demo", [{"run_id": "c", "x": 3}], results_dir=tmp_path / "elsewhere")
    assert [r["x"] for r in load_results("demo", results_dir=tmp_path / "elsewhere")] == [3]
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
        assert "2026-11-23" in where and "2.11.0" in where and "triton 3.6.0" in where and "1 CPU thread," in where
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


def _fake_run(quick=False):
    header = run_header("scan", torch.device("cpu"), 1)
    return labs.bench.Run(header, torch.device("cpu"), quick=quick)


def test_run_record_fills_the_schema_and_derives_the_rates(capsys):
    run = _fake_run()
    record = run.record("op", shape=[4, 8], dtype=torch.float16, pass_="forward", median_ms=2.0, anchor="eager",
                        anchor_median_ms=4.0, gbytes=0.5, tflop=0.01, copy_gbps=500.0, params={"k": 1})
    assert tuple(record) == labs.bench.RECORD_KEYS and run.records == [record]
    assert record["gbps"] == pytest.approx(250.0) and record["tflops"] == pytest.approx(5.0)
    assert record["fraction_of_copy"] == pytest.approx(0.5) and record["dtype"] == "float16"
    assert record["threads"] == 1 and record["shape"] == [4, 8] and record["params"] == {"k": 1}
    assert "op 4x8 float16 forward: 2 ms | eager: 4 ms" in capsys.readouterr().out
    bare = run.record("other", shape=None, dtype=None, median_ms=None)
    assert bare["gbps"] is None and bare["fraction_of_copy"] is None and bare["params"] == {}
    elsewhere = run.record("op", shape={"q": (1, 2)}, dtype="float32", median_ms=1.0, devices=2)
    assert elsewhere["device"].startswith("2 x ") and elsewhere["shape"] == {"q": [1, 2]}


def test_run_compare_times_ours_then_the_anchor():
    order = []
    run = _fake_run(quick=True)  # quick: one timed call each, no warm-up
    record = run.compare("op", lambda: order.append("ours"), "the anchor", lambda: order.append("anchor"),
                         shape=[1], dtype=torch.float32)
    assert order == ["ours", "anchor"] and record["anchor"] == "the anchor"
    assert record["median_ms"] >= 0 and record["anchor_median_ms"] >= 0


def test_time_with_peak_has_no_peak_off_the_gpu():
    calls = []
    ms, peak = _fake_run(quick=True).time_with_peak(lambda: calls.append(1))
    assert calls == [1] and ms >= 0 and peak is None


def _script(name):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARK_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", labs.bench.BENCHMARKS)
def test_every_benchmark_script_runs_quick_and_writes_schema_records(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(labs.bench, "RESULTS_DIR", tmp_path / "default")
    threads_before = torch.get_num_threads()
    returned = _script(name).main(["--quick", "--threads", "1", "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert torch.get_num_threads() == threads_before  # the runner's thread count is scoped
    assert f"benchmarks/{name}.py --quick:" in out and "kernel path:" in out
    headings = next(line for line in out.splitlines() if line.startswith("op "))
    assert "ms" in headings.split() and "anchor" in headings.split()  # the table is printed
    records = load_results(name, results_dir=tmp_path)
    assert records and records == returned
    for record in records:
        assert tuple(record) == labs.bench.RECORD_KEYS
        assert record["benchmark"] == name and record["threads"] == 1 and record["device_kind"] == "cpu"
        assert record["median_ms"] > 0 and record["anchor_median_ms"] > 0
        assert len({r["run_id"] for r in records}) == 1
    assert not (tmp_path / "default").exists()  # --quick alone records nothing in the results folder


def test_quick_without_a_results_dir_records_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(labs.bench, "RESULTS_DIR", tmp_path)
    _script("diffusion").main(["--quick"])
    assert list(tmp_path.iterdir()) == []
    _script("diffusion").main(["--quick", "--no-record", "--results-dir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_the_runner_refuses_bad_flags(capsys):
    with pytest.raises(SystemExit):
        _script("scaled_softmax").main(["--threads", "0"])
    assert "--threads must be a positive int, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="run_benchmark: benchmark must be one of"):
        labs.bench.run_benchmark("nope", lambda run: None, "doc", [])


def test_recorded_results_all_have_the_schema():
    for name in labs.bench.BENCHMARKS:
        for record in load_results(name):
            assert tuple(record) == labs.bench.RECORD_KEYS, (name, record.get("run_id"))


def test_optional_anchor_imports_or_says_why_not(capsys):
    from labs.bench import optional_anchor

    assert optional_anchor("math", "sqrt", "math")(4.0) == 2.0
    assert optional_anchor("no_such_package_here", "f", "Nothing") is None
    assert "Nothing: not installed (ModuleNotFoundError); no Nothing anchor" in capsys.readouterr().out
