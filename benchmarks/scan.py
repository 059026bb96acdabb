"""Benchmark the linear scan ``h_t = a_t h_{t-1} + b_t``: Triton parallel scan vs a torch loop vs cumsum.

Run: ``python benchmarks/scan.py`` (``--no-record`` to print only). Prints a
table and appends one JSON record per case to ``benchmarks/results/scan.jsonl``.
On CUDA it times ``labs.ssm.linear_scan`` (the Triton scan) against the
sequential torch loop and the log-space ``cumsum`` formulation, and reports
the achieved bandwidth next to a device-to-device copy measured in the same
run (the ceiling for a kernel that reads ``a, b`` and writes ``h`` once). On a
CPU it times the torch paths a CPU reader runs (there ``linear_scan`` is the loop).
"""

from __future__ import annotations

import argparse

import torch

import labs
from labs.bench import append_results, median_ms, run_header
from labs.ssm import linear_scan
from labs.ssm.reference import linear_scan_cumsum, linear_scan_reference


def third_party():
    """An optional outside scan kernel to compare with, or a reason why not."""
    try:
        from accelerated_scan.triton import scan as accelerated  # (batch, dim, seqlen), power-of-two lengths
    except Exception as error:  # not installed, or broken
        return None, f"accelerated-scan not installed ({type(error).__name__})"
    return accelerated, "accelerated-scan"


def cases(on_gpu: bool):
    if on_gpu:
        for rows, L in ((16384, 1024), (4096, 4096), (1024, 16384), (256, 65536)):
            yield rows, L, torch.float32
    else:
        for rows, L in ((64, 256), (256, 1024), (16, 4096)):
            yield rows, L, torch.float32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to results/")
    args = parser.parse_args()

    dev = labs.device()
    on_gpu = dev.type == "cuda"
    outside, outside_why = third_party()
    run = run_header("scan", dev) | {
        "anchor": "device-to-device copy of one tensor (y.copy_(x))",
        "third_party": outside_why,
    }
    print(f"{run['device']} | {run['backend']} | {outside_why}")
    print(f"{'rows x L':>14} {'pass':>8} {'impl':>10} {'ms':>9} {'GB/s':>8} {'% copy':>7}")
    records = []
    for rows, L, dtype in cases(on_gpu):
        a = torch.rand(rows, L, device=dev, dtype=dtype) * 0.5 + 0.5  # in (0.5, 1): long memory, and cumsum-safe
        b = torch.randn(rows, L, device=dev, dtype=dtype)
        g = torch.randn_like(b)
        nbytes = a.numel() * a.element_size()
        spare = torch.empty_like(a)
        copy_ms = median_ms(lambda: spare.copy_(a))
        copy_gbps = 2 * nbytes / 1e9 / (copy_ms / 1e3)
        impls = {"cumsum": linear_scan_cumsum}
        if on_gpu:  # on a CPU labs.ssm.linear_scan *is* the loop below
            impls["labs"] = lambda x, y: linear_scan(x, y)
        if not on_gpu or L <= 4096:  # the loop launches L kernels per pass; skip it where it takes seconds
            impls["loop"] = linear_scan_reference
        if outside is not None and on_gpu and (L & (L - 1)) == 0:
            impls["outside"] = lambda x, y: outside(x[None], y[None])[0]
        for impl, fn in impls.items():
            ag, bg = a.clone().requires_grad_(), b.clone().requires_grad_()
            passes = {
                "forward": (lambda: fn(a, b), 3),  # read a, b; write h
                "fwd+bwd": (lambda: torch.autograd.grad(fn(ag, bg), (ag, bg), g), 8),  # + read a, g, h; write da, db
            }
            for name, (call, tensors_moved) in passes.items():
                repeats = 3 if impl == "loop" else 20
                ms = median_ms(call, warmup=1 if impl == "loop" else 3, repeats=repeats)
                gbps = tensors_moved * nbytes / 1e9 / (ms / 1e3)
                record = run | {
                    "shape": [rows, L],
                    "dtype": str(dtype).removeprefix("torch."),
                    "pass": name,
                    "impl": impl,
                    "median_ms": ms,
                    "gbps": gbps,
                    "copy_median_ms": copy_ms,
                    "copy_gbps": copy_gbps,
                    "fraction_of_copy": gbps / copy_gbps,
                }
                records.append(record)
                print(f"{f'{rows} x {L}':>14} {name:>8} {impl:>10} {ms:9.3f} {gbps:8.1f} {100 * gbps / copy_gbps:6.0f}%")
    if not args.no_record:
        append_results("scan", records)


if __name__ == "__main__":
    main()
