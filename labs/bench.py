"""Timing, and reading what the scripts in ``benchmarks/`` recorded.

Chapters time small things live with ``median_ms`` and quote GPU figures only
from the recorded results, with the device they were measured on
(``show_gpu_results``).
"""

from __future__ import annotations

import argparse
import html
import importlib
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

from ._backend import backend_info, device, triton_status
from ._checks import choice, whole_number
from ._threads import threads
from .provenance import REPO_ROOT, book_commit

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
"""Where ``benchmarks/<name>.py`` appends its records (``<name>.jsonl``); tests point it elsewhere."""

BENCHMARKS = ("allreduce", "diffusion", "linear_attention", "recurrent", "rope", "scaled_softmax", "scan", "td")
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
    n = record.get("threads")
    thread_text = "threads not recorded" if n is None else f"{n} CPU thread{'s' if n != 1 else ''}"
    return (f"{record['device']} ({record['device_kind']}), {record['date']}, torch {record['torch']}, "
            f"{record['triton']}, {thread_text}, labs {record['labs_commit']}")


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


def median_ms(fn: Callable[[], object], *, warmup: int = 3, repeats: int = 20,
              device: torch.device | str | None = None) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after ``warmup`` untimed ones.

    The book's one timer. CUDA work is synchronised before each clock reading: on ``device``
    if it is a CUDA device, on every device when ``device`` is None and CUDA is present,
    not at all for a CPU ``device``.
    """
    whole_number("median_ms", "warmup", warmup, minimum=0)
    whole_number("median_ms", "repeats", repeats)
    if device is None:
        sync = torch.cuda.synchronize if torch.cuda.is_available() else None
    else:
        device = torch.device(device)
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    sync = sync or (lambda: None)
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


def run_header(benchmark: str, dev: torch.device, threads: int) -> dict:
    """The fields every record of one benchmark run shares: run id, date, device, versions, commit, threads."""
    return {
        "run_id": uuid.uuid4().hex[:12],
        "benchmark": benchmark,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(dev),
        "device_kind": dev.type,
        "kernel_path": backend_info(),
        "torch": torch.__version__,
        "triton": triton_status()[1],
        "labs_commit": book_commit(),
        "threads": threads,
    }


def append_results(benchmark: str, records: list[dict], *, results_dir=None) -> None:
    """Append ``records`` to ``<results_dir>/<benchmark>.jsonl`` (default ``RESULTS_DIR``), one JSON object a line."""
    path = _results_path(benchmark, "append_results", results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    print(f"appended {len(records)} records to {path}")


# The runner every script in benchmarks/ shares: its flags, the run header, timing, the record schema.

def optional_anchor(module: str, name: str, label: str):
    """``module.name`` from a third-party package used as an anchor, or None (saying so) when it does not import.

    Anchors such as flash-linear-attention or Liger-Kernel are not in the book's pins; a run
    without them still times ours against the anchors that are always there.
    """
    try:
        return getattr(importlib.import_module(module), name)
    except Exception as error:  # not installed, or a broken install raising anything
        print(f"{label}: not installed ({type(error).__name__}); no {label} anchor")
        return None


DEFAULT_THREADS = 1
"""Torch CPU threads for every case unless ``--threads`` says otherwise: one thread gives steady
medians on a small or shared CPU and the same setting on every machine (GPU cases hardly use the CPU)."""


class Run:
    """What a benchmark's ``cases(run)`` gets: where it runs, how hard to try, and how to time and record.

    ``run.time(fn)`` is ``median_ms`` (one call under ``--quick``); ``run.compare`` times ours and
    the anchor one after the other and records both; ``run.record`` records numbers measured by hand.
    Every record has exactly the keys ``RECORD_KEYS``.
    """

    def __init__(self, header: dict, dev: torch.device, *, quick: bool):
        self.header, self.device, self.quick = header, dev, quick
        self.records: list[dict] = []

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def time(self, fn: Callable[[], object], *, warmup: int = 3, repeats: int = 20) -> float:
        """Median milliseconds of ``fn()`` (one call, no warm-up, under ``--quick``)."""
        if self.quick:
            warmup, repeats = 0, 1
        return median_ms(fn, warmup=warmup, repeats=repeats, device=self.device)

    def time_with_peak(self, fn: Callable[[], object], *, warmup: int = 3,
                       repeats: int = 20) -> tuple[float, float | None]:
        """``time(fn)`` and the peak device memory allocated meanwhile, in MiB (None off the GPU)."""
        if not self.on_gpu:
            return self.time(fn, warmup=warmup, repeats=repeats), None
        torch.cuda.reset_peak_memory_stats(self.device)
        ms = self.time(fn, warmup=warmup, repeats=repeats)
        return ms, torch.cuda.max_memory_allocated(self.device) / 2**20

    def record(
        self, op: str, *, shape, dtype, median_ms: float | None, pass_: str | None = None, anchor: str | None = None,
        anchor_median_ms: float | None = None, gbytes: float | None = None, tflop: float | None = None,
        copy_gbps: float | None = None, params: dict | None = None, dev: torch.device | None = None,
        devices: int = 1,
    ) -> dict:
        """Add one record: ``gbytes``/``tflop`` (moved / computed by one call of ours) give GB/s and TFLOP/s.

        ``copy_gbps`` is a device copy's bandwidth from the same run (``copy_bandwidth``);
        ``dev``/``devices`` name another device than the run's (e.g. CPU processes on a GPU machine).
        """
        where = {}
        if dev is not None or devices != 1:
            dev = self.device if dev is None else dev
            name = device_name(dev)
            where = {"device": name if devices == 1 else f"{devices} x {name}", "device_kind": dev.type}
        seconds = None if median_ms is None else median_ms / 1e3
        gbps = gbytes / seconds if gbytes is not None and seconds else None
        record = self.header | where | {
            "op": op,
            "shape": {k: [int(d) for d in v] for k, v in shape.items()} if isinstance(shape, dict)
            else None if shape is None else [int(d) for d in shape],
            "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
            "pass": pass_,
            "median_ms": median_ms,
            "anchor": anchor,
            "anchor_median_ms": anchor_median_ms,
            "gbps": gbps,
            "tflops": tflop / seconds if tflop is not None and seconds else None,
            "copy_gbps": copy_gbps,
            "fraction_of_copy": gbps / copy_gbps if gbps is not None and copy_gbps else None,
            "params": dict(params or {}),
        }
        record = {key: record[key] for key in RECORD_KEYS}
        self.records.append(record)
        anchor_text = "" if anchor_median_ms is None else f" | {anchor}: {_number(anchor_median_ms)} ms"
        ours_text = "-" if median_ms is None else _number(median_ms)
        print(f"  {op} {_shape_text(record['shape']) if shape is not None else ''} {record['dtype'] or ''} "
              f"{pass_ or ''}: {ours_text} ms{anchor_text}", flush=True)
        return record

    def compare(
        self, op: str, ours: Callable[[], object], anchor: str, anchor_fn: Callable[[], object], *,
        warmup: int = 3, repeats: int = 20, **fields,
    ) -> dict:
        """Time ``ours``, then the anchor ``anchor_fn`` (named ``anchor``); record both (``fields``: see ``record``)."""
        ours_ms = self.time(ours, warmup=warmup, repeats=repeats)
        anchor_ms = self.time(anchor_fn, warmup=warmup, repeats=repeats)
        return self.record(op, median_ms=ours_ms, anchor=anchor, anchor_median_ms=anchor_ms, **fields)

    def copy_bandwidth(self, copy: Callable[[], object], gbytes: float) -> float:
        """GB/s of ``copy()``, a device copy reading and writing ``gbytes`` in all: a streaming kernel's ceiling."""
        return gbytes / (self.time(copy) / 1e3)


def run_benchmark(benchmark: str, cases: Callable[[Run], object], description: str, argv=None) -> list[dict]:
    """The ``main`` of every script in ``benchmarks/``: parse the flags, print the header, run
    ``cases(run)`` inside ``labs.threads(--threads)``, print the table, append the records.

    Returns the records. ``argv`` defaults to the command line.
    """
    choice("run_benchmark", "benchmark", benchmark, BENCHMARKS)
    parser = argparse.ArgumentParser(
        prog=f"benchmarks/{benchmark}.py", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny cases, one timed call each: checks that the script runs; records nothing "
                             "unless --results-dir is given")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"torch CPU threads for every case (default {DEFAULT_THREADS}: steady medians, and "
                             "the same setting on every machine); every record names it")
    parser.add_argument("--no-record", action="store_true", help="print only; append nothing")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help=f"append the records under this folder (default {RESULTS_DIR})")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be a positive int, got {args.threads}")

    dev = device()
    run = Run(run_header(benchmark, dev, args.threads), dev, quick=args.quick)
    print(f"benchmarks/{benchmark}.py{' --quick' if args.quick else ''}: {run_summary(run.header)}")
    print(f"kernel path: {run.header['kernel_path']}", flush=True)
    with threads(args.threads):
        cases(run)
    print()
    print(text_table(run.records) if run.records else "no cases ran")
    if not args.no_record and (args.results_dir is not None or not args.quick):
        append_results(benchmark, run.records, results_dir=args.results_dir)
    return run.records
