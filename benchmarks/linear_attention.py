"""Benchmark causal linear attention: the chunked Triton kernel against FlashAttention, and the torch forms.

* On CUDA: forward+backward of ``linear_attention(method="chunk")`` (the Triton
  kernel, fp16) against ``F.scaled_dot_product_attention(is_causal=True)``
  (FlashAttention) and, when it imports, flash-linear-attention's
  ``chunk_linear_attn``, at T = 1k .. 32k; ``params`` holds the peak GPU memory
  of ours and of the anchor.
* On a CPU: the forward pass of the chunked torch form against the quadratic
  form and (up to T = 512) the recurrent form, at T = 128 .. 4096; ``params``
  holds the size of the largest tensor each form materialises (computed from
  the shapes, not measured).

Run: ``python benchmarks/linear_attention.py`` (``make bench`` runs every
script). It prints a table and appends one record per case to
``benchmarks/results/linear_attention.jsonl`` (the schema: ``labs.bench.RECORD_KEYS``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import labs
from labs.attention import linear_attention
from labs.bench import optional_anchor, run_benchmark

CHUNK = 64


def gpu_cases(run):
    dev = run.device
    fla_fn = optional_anchor("fla.ops.linear_attn", "chunk_linear_attn", "flash-linear-attention")
    g = labs.generator("benchmark", device=dev)
    b, h, d = 2, 8, 64
    for t in (256,) if run.quick else (1024, 2048, 4096, 8192, 16384, 32768):
        q, k, v, d_out = (torch.randn(b, h, t, d, device=dev, dtype=torch.float16, generator=g) for _ in range(4))
        for x in (q, k, v):
            x.requires_grad_()

        def ours():
            out = linear_attention(q, k, v, causal=True, method="chunk", chunk_size=CHUNK)
            torch.autograd.grad(out, (q, k, v), d_out)

        def flash():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.autograd.grad(out, (q, k, v), d_out)

        def fla_run():
            # fla takes (B, T, H, D) by default; its feature map is applied here to match ours
            fq, fk = (F.elu(x.transpose(1, 2).contiguous()) + 1 for x in (q, k))
            out = fla_fn(fq, fk, v.transpose(1, 2).contiguous(), scale=1.0, normalize=True)[0]
            torch.autograd.grad(out, (q, k, v), d_out.transpose(1, 2))

        ours_ms, ours_mib = run.time_with_peak(ours, repeats=10)
        anchors = {"F.scaled_dot_product_attention(is_causal=True)": flash}
        if fla_fn is not None:
            anchors["fla chunk_linear_attn"] = fla_run
        for anchor, fn in anchors.items():
            anchor_ms, anchor_mib = run.time_with_peak(fn, repeats=10)
            run.record("linear_attention(method='chunk'), Triton", shape=[b, h, t, d], dtype=torch.float16,
                       pass_="fwd+bwd", median_ms=ours_ms, anchor=anchor, anchor_median_ms=anchor_ms,
                       params={"chunk_size": CHUNK, "peak_mib": round(ours_mib, 1),
                               "anchor_peak_mib": round(anchor_mib, 1)})


def cpu_cases(run):
    g = labs.generator("benchmark", device=run.device)
    b, h, d = 1, 4, 32
    for t in (16,) if run.quick else (128, 256, 512, 1024, 2048, 4096):
        q, k, v = (torch.randn(b, h, t, d, device=run.device, generator=g) for _ in range(3))
        largest = {  # float32 elements of the largest tensor each form materialises
            "chunk": b * h * max(t * CHUNK, -(-t // CHUNK) * d * d),  # chunk-local scores or the per-chunk states
            "quadratic": b * h * t * t,  # the T x T similarity matrix
            "recurrent": b * h * t * d,  # the stacked outputs; the state itself is only d x d
        }

        def form(method):
            return lambda: linear_attention(q, k, v, causal=True, method=method, chunk_size=CHUNK)

        ours_ms = run.time(form("chunk"), warmup=2, repeats=11)
        for method in ("quadratic", "recurrent"):
            if method == "recurrent" and t > 512:  # a Python loop over time: too slow to be worth timing
                continue
            run.record("linear_attention(method='chunk')", shape=[b, h, t, d], dtype=torch.float32, pass_="forward",
                       median_ms=ours_ms, anchor=f"linear_attention(method='{method}')",
                       anchor_median_ms=run.time(form(method), warmup=2, repeats=11),
                       params={"chunk_size": CHUNK, "largest_mib": largest["chunk"] * 4 / 2**20,
                               "anchor_largest_mib": largest[method] * 4 / 2**20})


def cases(run):
    (gpu_cases if run.on_gpu else cpu_cases)(run)


def main(argv=None) -> list[dict]:
    return run_benchmark("linear_attention", cases, __doc__, argv)


if __name__ == "__main__":
    main()
