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
