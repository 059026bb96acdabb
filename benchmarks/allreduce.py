"""Benchmark our ring allreduce against the backend's own ``dist.all_reduce`` across message sizes.

On any machine it starts 2 and 4 local processes with gloo (a CPU run); with
two or more GPUs it also runs one process per GPU with NCCL. Each size is
timed as in the chapter (``labs.comm.experiment.time_allreduce``): the median
over repeats of the slowest rank's median call. GB/s is the nccl-tests bus
bandwidth, ``algbw * 2 (p - 1) / p``. Every rank runs with ``--threads``
torch CPU threads.

Run: ``python benchmarks/allreduce.py`` (``make bench`` runs every script). It
prints a table and appends one record per case to
``benchmarks/results/allreduce.jsonl`` (the schema: ``labs.bench.RECORD_KEYS``).
"""

from __future__ import annotations

import torch

from labs.bench import run_benchmark
from labs.comm import spawn
from labs.comm.experiment import time_allreduce


def configurations(run):
    """(process-group backend, world size, device kind, sizes in float32 elements)."""
    if run.quick:
        yield "gloo", 2, "cpu", [16, 1024]
        return
    cpu_sizes = [2**k for k in range(4, 21, 2)]  # 64 B .. 4 MiB
    for p in (2, 4):
        yield "gloo", p, "cpu", cpu_sizes
    gpus = torch.cuda.device_count() if run.on_gpu else 0
    if gpus >= 2:
        yield "nccl", gpus, "cuda", [2**k for k in range(8, 29, 2)]  # 1 KiB .. 1 GiB


def cases(run):
    repeats, iters = (1, 1) if run.quick else (7, 5)
    threads = run.header["threads"]
    for backend, p, kind, sizes in configurations(run):
        dev = torch.device("cuda", 0) if kind == "cuda" else torch.device("cpu")
        rows = spawn(time_allreduce, p, sizes, repeats, iters, kind, backend=backend, timeout=600, threads=threads)[0]
        for row in rows:
            run.record("ring_allreduce", shape=[row["n_elements"]], dtype=torch.float32, median_ms=row["ring_s"] * 1e3,
                       anchor=f"torch.distributed.all_reduce ({backend})", anchor_median_ms=row["backend_s"] * 1e3,
                       gbytes=row["n_bytes"] * 2 * (p - 1) / p / 1e9,  # bus bytes: GB/s is the bus bandwidth
                       params={"process_group": backend, "world_size": p, "n_bytes": row["n_bytes"]},
                       dev=dev, devices=p if kind == "cuda" else 1)


def main(argv=None) -> list[dict]:
    return run_benchmark("allreduce", cases, __doc__, argv)


if __name__ == "__main__":
    main()
