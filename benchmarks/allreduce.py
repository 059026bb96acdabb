"""Benchmark our ring allreduce against the backend's own ``dist.all_reduce`` across message sizes.

Run: ``python benchmarks/allreduce.py`` (``make bench`` runs every script).
On a CPU it starts 2 and 4 local processes with gloo; with two or more GPUs it
also runs one process per GPU with NCCL. Prints time, algorithm bandwidth and
bus bandwidth (``algbw * 2 (p - 1) / p``, the nccl-tests convention) and
appends one JSON record per case to ``benchmarks/results/allreduce.jsonl``.
"""

from __future__ import annotations

import argparse

import torch

from labs.bench import append_results, device_name, run_header
from labs.comm import busbw, spawn
from labs.comm.experiment import time_allreduce


def configurations():
    """(backend, world size, device kind, sizes in float32 elements)."""
    cpu_sizes = [2**k for k in range(4, 21, 2)]  # 64 B .. 4 MiB
    for p in (2, 4):
        yield "gloo", p, "cpu", cpu_sizes
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus >= 2:
        yield "nccl", gpus, "cuda", [2**k for k in range(8, 29, 2)]  # 1 KiB .. 1 GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to results/")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()

    run = run_header("allreduce") | {
        "dtype": "float32",
        "anchor": "torch.distributed.all_reduce (the backend's own algorithm)",
    }
    records = []
    for backend, p, kind, sizes in configurations():
        dev = torch.device("cuda", 0) if kind == "cuda" else torch.device("cpu")
        where = {"device": device_name(dev) + ("" if kind == "cpu" else f" x {p}"), "device_kind": kind}
        print(f"\n{backend}, {p} processes on {where['device']}")
        print(f"{'bytes':>10} {'ring ms':>9} {'backend ms':>11} {'ring busbw GB/s':>16} {'backend busbw GB/s':>19}")
        rows = spawn(time_allreduce, p, sizes, args.repeats, args.iters, kind, backend=backend, timeout=600)[0]
        for row in rows:
            record = run | where | {
                "backend": backend,
                "world_size": p,
                "n_elements": row["n_elements"],
                "n_bytes": row["n_bytes"],
                "median_ms": row["ring_s"] * 1e3,
                "busbw_gbps": busbw(row["n_bytes"], row["ring_s"], p) / 1e9,
                "anchor_median_ms": row["backend_s"] * 1e3,
                "anchor_busbw_gbps": busbw(row["n_bytes"], row["backend_s"], p) / 1e9,
                "speedup": row["backend_s"] / row["ring_s"],
            }
            records.append(record)
            print(f"{row['n_bytes']:>10} {record['median_ms']:9.3f} {record['anchor_median_ms']:11.3f} "
                  f"{record['busbw_gbps']:16.3f} {record['anchor_busbw_gbps']:19.3f}")
    if not args.no_record:
        append_results("allreduce", records)


if __name__ == "__main__":
    main()
