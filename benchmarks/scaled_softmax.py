"""Benchmark the fused scaled softmax against eager PyTorch (``torch.softmax(scale * x)``).

Run: ``python benchmarks/scaled_softmax.py`` (``make bench`` runs every script).
Prints a table and appends one JSON record per case to
``benchmarks/results/scaled_softmax.jsonl``. On CUDA it times the Triton kernel;
on a CPU it times the torch reference path, which is what a CPU reader runs.
"""

from __future__ import annotations

import argparse

import torch

import labs
from labs.bench import append_results, median_ms, run_header
from labs.scaling import scaled_softmax


def cases(on_gpu: bool):
    if on_gpu:
        for dtype in (torch.float16, torch.float32):
            for cols in (256, 1024, 4096, 16384):
                yield (16384 * 1024 // cols, cols), dtype
    else:
        for cols in (256, 1024, 4096):
            yield (1024 * 256 // cols, cols), torch.float32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to results/")
    args = parser.parse_args()

    dev = labs.device()
    on_gpu = dev.type == "cuda"
    run = run_header("scaled_softmax", dev) | {
        "anchor": "torch.softmax(scale * x, -1), eager",
    }
    scale = 0.125
    records = []
    print(f"{run['device']} | {run['backend']}")
    print(f"{'shape':>14} {'dtype':>9} {'pass':>9} {'labs ms':>9} {'torch ms':>9} {'labs GB/s':>10} {'speedup':>8}")
    for shape, dtype in cases(on_gpu):
        x = torch.randn(shape, device=dev, dtype=dtype)
        dy = torch.randn_like(x)
        xg = x.clone().requires_grad_()
        passes = {
            "forward": (lambda: scaled_softmax(x, scale), lambda: torch.softmax(scale * x, -1), 2),
            "fwd+bwd": (
                lambda: torch.autograd.grad(scaled_softmax(xg, scale), xg, dy),
                lambda: torch.autograd.grad(torch.softmax(scale * xg, -1), xg, dy),
                5,  # x, y, dy, dx, plus y again in the backward
            ),
        }
        for name, (ours, anchor, tensors_moved) in passes.items():
            ours_ms, anchor_ms = median_ms(ours), median_ms(anchor)
            gbytes = tensors_moved * x.numel() * x.element_size() / 1e9
            record = run | {
                "shape": list(shape),
                "dtype": str(dtype).removeprefix("torch."),
                "pass": name,
                "median_ms": ours_ms,
                "gbps": gbytes / (ours_ms / 1e3),
                "anchor_median_ms": anchor_ms,
                "anchor_gbps": gbytes / (anchor_ms / 1e3),
                "speedup": anchor_ms / ours_ms,
            }
            records.append(record)
            print(
                f"{str(tuple(shape)):>14} {record['dtype']:>9} {name:>9} {ours_ms:9.3f} "
                f"{anchor_ms:9.3f} {record['gbps']:10.1f} {record['speedup']:8.2f}"
            )
    if not args.no_record:
        append_results("scaled_softmax", records)


if __name__ == "__main__":
    main()
