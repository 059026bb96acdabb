"""Timing, and reading what the scripts in ``benchmarks/`` recorded.

Chapters time small things live with ``median_ms`` and quote GPU figures only
from the recorded results, with the device they were measured on.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import torch

from ._backend import backend_info, triton_status
from .provenance import REPO_ROOT, book_commit

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def _results_path(name: str, caller: str):
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"{caller}: name must be a benchmark name like 'scaled_softmax', got {name!r}")
    return RESULTS_DIR / f"{name}.jsonl"


def load_results(name: str) -> list[dict]:
    """All records of ``benchmarks/results/<name>.jsonl``, oldest first ([] if none yet)."""
    path = _results_path(name, "load_results")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def latest_run(records: list[dict], *, device_kind: str = "cuda") -> list[dict]:
    """The records of the most recent run on a ``device_kind`` device (one run shares a ``run_id``)."""
    runs = [r for r in records if r.get("device_kind") == device_kind]
    if not runs:
        return []
    last = runs[-1]["run_id"]
    return [r for r in runs if r["run_id"] == last]


def median_ms(fn: Callable[[], object], *, warmup: int = 3, repeats: int = 20) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA work is synchronised)."""
    if repeats < 1:
        raise ValueError(f"median_ms: repeats must be >= 1, got {repeats}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def device_name(dev: torch.device) -> str:
    """A human-readable name for the device a benchmark ran on (GPU model, or CPU model and cores)."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores"


def run_header(benchmark: str, dev: torch.device | None = None) -> dict:
    """The fields every record of one benchmark run shares: run id, date, versions, commit, device.

    ``dev=None`` leaves the device out, for benchmarks that name it per case.
    """
    run = {
        "run_id": uuid.uuid4().hex[:12],
        "benchmark": benchmark,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton_status()[1],
        "labs_commit": book_commit(),
    }
    if dev is not None:
        run |= {"device": device_name(dev), "device_kind": dev.type, "backend": backend_info()}
    return run


def append_results(benchmark: str, records: list[dict]) -> None:
    """Append ``records`` to ``benchmarks/results/<benchmark>.jsonl``, one JSON object per line."""
    path = _results_path(benchmark, "append_results")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    print(f"appended {len(records)} records to {path}")
