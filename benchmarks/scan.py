"""Benchmark the linear scan ``h_t = a_t h_{t-1} + b_t``: ``labs.ssm.linear_scan`` against a torch loop and cumsum.

``labs.ssm.linear_scan`` is the Triton parallel scan on CUDA and the plain
torch loop on a CPU (what a CPU reader runs). The anchors: the log-space
``cumsum`` formulation (``linear_scan_cumsum``), the sequential loop
(``linear_scan_reference``, on CUDA up to L = 4096, since it launches L
kernels per pass) and, on CUDA, the accelerated-scan package when it imports.
A scan reads a and b and writes h once (forward), then reads a, g and h and
writes da and db (backward): GB/s counts those tensors, and "of copy" compares
it with a device-to-device copy (``y.copy_(x)``) timed in the same run.

Accuracy is measured next to the timing, since a fast scan that is wrong is
no anchor: every forward record's ``params`` hold the largest absolute error
of ours and of the anchor against the same scan in float64 (on a CPU the
float64 loop; on CUDA the float64 Triton scan, which the tests hold against
the loop). The float32 log-space cumsum loses accuracy as ``L`` grows: its
running ``log P_t`` reaches ``L * E[log a]`` in magnitude, and float32 keeps
that to a relative ``6e-8``, so its absolute error, and the relative error it
puts into ``h_t``, grow in proportion to ``L`` (about 1e-2 at ``L = 65536`` on
values of order one). The scan itself has no such growth.

Run: ``python benchmarks/scan.py`` (``make bench`` runs every script). It
prints a table and appends one record per case to ``benchmarks/results/scan.jsonl``
(the schema: ``labs.bench.RECORD_KEYS``).
"""

from __future__ import annotations

import torch

import labs
from labs.bench import optional_anchor, run_benchmark
from labs.ssm import linear_scan
from labs.ssm.reference import linear_scan_cumsum, linear_scan_reference


def shapes(run):
    """(rows, L): rows independent scans of length L, float32."""
    if run.quick:
        return [(4, 16)]
    if run.on_gpu:
        return [(16384, 1024), (4096, 4096), (1024, 16384), (256, 65536)]
    return [(64, 256), (256, 1024), (16, 4096)]


def cases(run):
    dev = run.device
    outside = optional_anchor("accelerated_scan.triton", "scan", "accelerated-scan") if run.on_gpu else None
    g = labs.generator("benchmark", device=dev)
    for rows, L in shapes(run):
        a = torch.rand(rows, L, device=dev, generator=g) * 0.5 + 0.5  # in (0.5, 1): long memory, and cumsum-safe
        b = torch.randn(rows, L, device=dev, generator=g)
        grad = torch.randn(rows, L, device=dev, generator=g)
        nbytes = a.numel() * a.element_size()
        spare = torch.empty_like(a)
        copy_gbps = run.copy_bandwidth(lambda: spare.copy_(a), 2 * nbytes / 1e9)
        anchors = {"linear_scan_cumsum (log-space cumsum)": linear_scan_cumsum}
        if run.on_gpu and L <= 4096:  # on a CPU, linear_scan is this loop
            anchors["linear_scan_reference (torch loop)"] = linear_scan_reference
        if outside is not None and (L & (L - 1)) == 0:
            anchors["accelerated_scan.triton.scan"] = lambda x, y: outside(x[None], y[None])[0]
        ag, bg = a.clone().requires_grad_(), b.clone().requires_grad_()
        exact = linear_scan(a.double(), b.double())  # the float64 scan: the reference for every fp32 path

        def max_error(fn):
            return (fn(a, b).double() - exact).abs().max().item()

        ours_error = max_error(linear_scan)
        errors = {anchor: max_error(fn) for anchor, fn in anchors.items()}
        print(f"  accuracy {rows}x{L} float32 against float64, max |error|: linear_scan {ours_error:.2e}; "
              + "; ".join(f"{anchor} {e:.2e}" for anchor, e in errors.items()), flush=True)

        def passes(fn):  # pass -> (call, tensors moved)
            return {"forward": (lambda: fn(a, b), 3),
                    "fwd+bwd": (lambda: torch.autograd.grad(fn(ag, bg), (ag, bg), grad), 8)}

        def timed(fn, call):
            slow = fn is linear_scan_reference or (fn is linear_scan and not run.on_gpu)  # the loop: seconds
            return run.time(call, warmup=1 if slow else 3, repeats=3 if slow else 20)

        ours = passes(linear_scan)
        for name, (call, tensors_moved) in ours.items():
            ours_ms = timed(linear_scan, call)
            for anchor, fn in anchors.items():
                accuracy = {"max_abs_error": ours_error, "anchor_max_abs_error": errors[anchor],
                            "error_reference": "float64 linear_scan"} if name == "forward" else {}
                run.record("linear_scan", shape=[rows, L], dtype=torch.float32, pass_=name, median_ms=ours_ms,
                           anchor=anchor, anchor_median_ms=timed(fn, passes(fn)[name][0]),
                           gbytes=tensors_moved * nbytes / 1e9, copy_gbps=copy_gbps, params=accuracy)


def main(argv=None) -> list[dict]:
    return run_benchmark("scan", cases, __doc__, argv)


if __name__ == "__main__":
    main()
