"""Timing, and reading what the scripts in ``benchmarks/`` recorded.

Chapters time small things live with ``median_ms`` and quote GPU figures only
from the recorded results, with the device they were measured on
(``show_gpu_results``).
"""

from __future__ import annotations

import html
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from ._backend import backend_info, triton_status
from ._checks import choice
from .provenance import REPO_ROOT, book_commit

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
"""Where ``benchmarks/<name>.py`` appends its records (``<name>.jsonl``); tests point it elsewhere."""

BENCHMARKS = ("allreduce", "diffusion", "linear_attention", "rope", "scaled_softmax", "scan", "td")
"""The scripts in ``benchmarks/`` (one results file each)."""

RECORD_KEYS = (
    "run_id", "benchmark", "date", "device", "device_kind", "kernel_path", "torch", "triton", "labs_commit",
    "threads", "op", "shape", "dtype", "pass", "median_ms", "anchor", "anchor_median_ms", "gbps", "tflops",
    "copy_gbps", "fraction_of_copy", "params",
)
"""The keys of every benchmark record, in this order; a value that does not apply is ``None``.

``device``/``device_kind``: where it ran (GPU model or CPU model and cores; "cuda" or "cpu").
``kernel_path``: ``labs.backend_info()`` for the run. ``threads``: torch CPU threads (``None``
where an old record did not say). ``op``, ``shape`` (a list of ints, or a dict of them for ops
with several inputs), ``dtype``, ``pass`` ("forward", "fwd+bwd", or ``None``): what was timed.
``median_ms``: our median; ``anchor``/``anchor_median_ms``: what we compare against, timed in
the same run. ``gbps``/``tflops``: our achieved rate where the bytes or FLOPs are known;
``copy_gbps``: a device copy's bandwidth in the same run, and ``fraction_of_copy`` = gbps /
copy_gbps. ``params``: the case's other settings and measurements (a dict).
"""


def _results_path(name: str, caller: str, results_dir=None):
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"{caller}: name must be a benchmark name like 'scaled_softmax', got {name!r}")
    return Path(RESULTS_DIR if results_dir is None else results_dir) / f"{name}.jsonl"


def load_results(name: str, *, results_dir=None) -> list[dict]:
    """All records of ``benchmarks/results/<name>.jsonl``, oldest first ([] if none yet)."""
    path = _results_path(name, "load_results", results_dir)
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


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _shape_text(shape) -> str:
    if isinstance(shape, dict):
        return ", ".join(f"{name} {_shape_text(dims)}" for name, dims in shape.items())
    return "x".join(str(d) for d in shape)


def _ratio(record: dict) -> str | None:
    if record["median_ms"] is None or not record["anchor_median_ms"]:
        return None
    return f"{record['median_ms'] / record['anchor_median_ms']:.3g}"


def _columns(record: dict) -> dict[str, tuple[str | None, bool]]:
    """heading -> (cell text, or None where it does not apply; right-aligned?) for one record."""
    get = {key: record.get(key) for key in RECORD_KEYS}

    def number(key):
        return None if get[key] is None else _number(get[key])

    fraction, params = get["fraction_of_copy"], get["params"] or {}
    return {
        "op": (get["op"], False),
        "shape": (None if get["shape"] is None else _shape_text(get["shape"]), False),
        "dtype": (get["dtype"], False),
        "pass": (get["pass"], False),
        "ms": (number("median_ms"), True),
        "anchor": (get["anchor"], False),
        "anchor ms": (number("anchor_median_ms"), True),
        "ours/anchor": (_ratio(get), True),
        "GB/s": (number("gbps"), True),
        "TFLOP/s": (number("tflops"), True),
        "copy GB/s": (number("copy_gbps"), True),
        "of copy": (None if fraction is None else f"{100 * fraction:.3g}%", True),
        "params": (", ".join(f"{k}={v}" for k, v in params.items()) or None, False),
    }


def format_table(records: list[dict]) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headings, rows and right-alignment of a table of schema records (columns empty in all records dropped)."""
    per_record = [_columns(r) for r in records]
    headings = [h for h in per_record[0] if any(cells[h][0] is not None for cells in per_record)]
    rows = [[cells[h][0] or "-" for h in headings] for cells in per_record]
    return headings, rows, [per_record[0][h][1] for h in headings]


def text_table(records: list[dict]) -> str:
    """A plain-text table of schema records, each column as wide as its widest cell."""
    headings, rows, right = format_table(records)
    widths = [max(len(h), *(len(row[j]) for row in rows)) for j, h in enumerate(headings)]

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    return "\n".join([line(headings), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def html_table(records: list[dict]) -> str:
    """The same table as ``text_table``, as HTML."""
    headings, rows, right = format_table(records)
    style = ["style='text-align:right'" if r else "style='text-align:left'" for r in right]
    head = "".join(f"<th {s}>{html.escape(h)}</th>" for h, s in zip(headings, style))
    body = "".join(
        "<tr>" + "".join(f"<td {s}>{html.escape(c)}</td>" for c, s in zip(row, style)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def run_summary(record: dict) -> str:
    """One line naming where and with what a run was measured."""
    threads = "threads not recorded" if record.get("threads") is None else f"{record['threads']} CPU thread(s)"
    return (f"{record['device']} ({record['device_kind']}), {record['date']}, torch {record['torch']}, "
            f"{record['triton']}, {threads}, labs {record['labs_commit']}")


class GpuResults:
    """The latest recorded GPU run of one benchmark, rendered as a table (HTML in the book, text elsewhere)."""

    def __init__(self, benchmark: str, records: list[dict]):
        self.benchmark = benchmark
        self.records = records

    def _missing(self) -> str:
        return (f"No GPU run of benchmarks/{self.benchmark}.py is recorded yet: run `make bench` on a CUDA "
                f"machine to record one.")

    def __repr__(self) -> str:
        if not self.records:
            return self._missing()
        first = self.records[0]
        return (f"Recorded GPU run of benchmarks/{self.benchmark}.py\n{run_summary(first)}\n"
                f"kernel path: {first['kernel_path']}\n\n{text_table(self.records)}")

    def _repr_html_(self) -> str:
        if not self.records:
            return f"<p>{html.escape(self._missing())}</p>"
        first = self.records[0]
        return (f"<div class='labs-gpu-results'><p><strong>Recorded GPU run of "
                f"<code>benchmarks/{html.escape(self.benchmark)}.py</code></strong>: "
                f"{html.escape(run_summary(first))}<br>kernel path: {html.escape(str(first['kernel_path']))}</p>"
                f"{html_table(self.records)}</div>")


def show_gpu_results(benchmark: str, *, results_dir=None) -> GpuResults:
    """The most recent GPU run recorded by ``benchmarks/<benchmark>.py``, ready to display in a chapter.

    ``benchmark`` is the script's name (one of ``BENCHMARKS``); ``results_dir`` defaults to
    ``RESULTS_DIR``. With no GPU run recorded the result displays one line saying how to make one.
    """
    choice("show_gpu_results", "benchmark", benchmark, BENCHMARKS)
    records = latest_run(load_results(benchmark, results_dir=results_dir), device_kind="cuda")
    return GpuResults(benchmark, records)


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
