"""Benchmark the fused scaled softmax against eager PyTorch (``torch.softmax(scale * x)``).

On CUDA it times the Triton kernel; on a CPU the torch reference path, which is
what a CPU reader runs. GB/s counts the tensors a pass must move at least once:
x and y forward; x, y, dy, dx and y again forward and backward.

Run: ``python benchmarks/scaled_softmax.py`` (``make bench`` runs every script).
It prints a table and appends one record per case to
``benchmarks/results/scaled_softmax.jsonl`` (the schema: ``labs.bench.RECORD_KEYS``).
"""

from __future__ import annotations

import torch

import labs
from labs.bench import run_benchmark
from labs.scaling import scaled_softmax

SCALE = 0.125
ANCHOR = "torch.softmax(scale * x, -1), eager"


def shapes(run):
    if run.quick:
        yield (64, 128), torch.float32
    elif run.on_gpu:
        for dtype in (torch.float16, torch.float32):
            for cols in (256, 1024, 4096, 16384):
                yield (16384 * 1024 // cols, cols), dtype
    else:
        for cols in (256, 1024, 4096):
            yield (1024 * 256 // cols, cols), torch.float32


def cases(run):
    g = labs.generator("benchmark", device=run.device)
    for shape, dtype in shapes(run):
        x = torch.randn(shape, device=run.device, dtype=dtype, generator=g)
        dy = torch.randn(shape, device=run.device, dtype=dtype, generator=g)
        xg = x.clone().requires_grad_()
        passes = {
            "forward": (lambda: scaled_softmax(x, SCALE), lambda: torch.softmax(SCALE * x, -1), 2),
            "fwd+bwd": (
                lambda: torch.autograd.grad(scaled_softmax(xg, SCALE), xg, dy),
                lambda: torch.autograd.grad(torch.softmax(SCALE * xg, -1), xg, dy),
                5,  # x, y, dy, dx, plus y again in the backward
            ),
        }
        for name, (ours, anchor, tensors_moved) in passes.items():
            run.compare("scaled_softmax", ours, ANCHOR, anchor, shape=shape, dtype=dtype, pass_=name,
                        gbytes=tensors_moved * x.numel() * x.element_size() / 1e9)


def main(argv=None) -> list[dict]:
    return run_benchmark("scaled_softmax", cases, __doc__, argv)


if __name__ == "__main__":
    main()
