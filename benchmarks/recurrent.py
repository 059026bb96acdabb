"""Benchmark gated linear attention with one decay per step: the chunked Triton kernel against its anchors.

* On CUDA: forward+backward of ``gated_linear_attention(method="chunk")`` (the
  Triton kernel, bf16, or fp16 below sm_80) against
  ``F.scaled_dot_product_attention(is_causal=True)`` (FlashAttention) and, when
  it imports, flash-linear-attention's ``chunk_simple_gla`` (the same mapping),
  at T = 1k .. 32k; ``params`` holds the peak GPU memory of ours and of the
  anchor. The issue's targets: within 1.25x of fla, faster than SDPA from T = 4096.
  One decay per key channel (GLA, a (B, H, T, K) log-decay) gets its own rows,
  against SDPA and, when it imports, fla's ``chunk_gla``.
* On a CPU: the forward pass of the torch chunked form against the masked
  quadratic form, at T = 128 .. 4096.

Run: ``python benchmarks/recurrent.py`` (``make bench`` runs every script). It
prints a table and appends one record per case to
``benchmarks/results/recurrent.jsonl`` (the schema: ``labs.bench.RECORD_KEYS``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import labs
from labs.bench import optional_anchor, run_benchmark
from labs.recurrent import gated_linear_attention

CHUNK = 64


def _inputs(b, h, t, d, dtype, dev, g, channel=False):
    q, k, v, d_out = (torch.randn(b, h, t, d, device=dev, dtype=dtype, generator=g) for _ in range(4))
    q = q / d ** 0.5  # the caller scales q: the mapping itself does not
    shape = (b, h, t, d) if channel else (b, h, t)  # one decay per key channel, or per step
    log_decay = torch.log(0.9 + 0.1 * torch.rand(shape, device=dev, generator=g)).to(dtype)
    return q, k, v, log_decay, d_out


def gpu_cases(run):
    dev = run.device
    # fla's chunk kernels for one decay per step and per key channel; both take (B, T, H, ...) and g=
    fla = {False: ("fla chunk_simple_gla", optional_anchor("fla.ops.simple_gla", "chunk_simple_gla",
                                                           "flash-linear-attention")),
           True: ("fla chunk_gla", optional_anchor("fla.ops.gla", "chunk_gla", "flash-linear-attention"))}
    dtype = torch.bfloat16 if torch.cuda.get_device_capability(dev) >= (8, 0) else torch.float16
    g = labs.generator("benchmark", device=dev)
    b, h, d = 2, 8, 64
    for t in (256,) if run.quick else (1024, 2048, 4096, 8192, 16384, 32768):
        for channel in (False, True):
            q, k, v, log_decay, d_out = _inputs(b, h, t, d, dtype, dev, g, channel=channel)
            for x in (q, k, v, log_decay):
                x.requires_grad_()

            def ours():
                out = gated_linear_attention(q, k, v, log_decay, chunk_size=CHUNK)
                torch.autograd.grad(out, (q, k, v, log_decay), d_out)

            def flash():
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                torch.autograd.grad(out, (q, k, v), d_out)

            def fla_run(fla_fn=fla[channel][1]):
                to_bthd = lambda x: x.transpose(1, 2)  # noqa: E731
                out = fla_fn(to_bthd(q), to_bthd(k), to_bthd(v), g=to_bthd(log_decay), scale=1.0)[0]  # q is scaled
                torch.autograd.grad(out, (q, k, v, log_decay), to_bthd(d_out))

            anchors = {"F.scaled_dot_product_attention(is_causal=True)": flash}
            if fla[channel][1] is not None:
                anchors[fla[channel][0]] = fla_run
            ours_ms, ours_mib = run.time_with_peak(ours, repeats=10)
            for anchor, fn in anchors.items():
                anchor_ms, anchor_mib = run.time_with_peak(fn, repeats=10)
                run.record(f"gated_linear_attention(method='chunk'), {'per-channel' if channel else 'per-step'} "
                           f"decay, Triton", shape=[b, h, t, d], dtype=dtype, pass_="fwd+bwd", median_ms=ours_ms,
                           anchor=anchor, anchor_median_ms=anchor_ms,
                           params={"chunk_size": CHUNK, "peak_mib": round(ours_mib, 1),
                                   "anchor_peak_mib": round(anchor_mib, 1)})


def cpu_cases(run):
    g = labs.generator("benchmark", device=run.device)
    b, h, d = 1, 4, 32
    for t in (16,) if run.quick else (128, 256, 512, 1024, 2048, 4096):
        q, k, v, log_decay, _ = _inputs(b, h, t, d, torch.float32, run.device, g)

        def form(method):
            return lambda: gated_linear_attention(q, k, v, log_decay, method=method, chunk_size=CHUNK)

        run.record("gated_linear_attention(method='chunk')", shape=[b, h, t, d], dtype=torch.float32,
                   pass_="forward", median_ms=run.time(form("chunk"), warmup=2, repeats=11),
                   anchor="gated_linear_attention(method='quadratic')",
                   anchor_median_ms=run.time(form("quadratic"), warmup=2, repeats=11),
                   params={"chunk_size": CHUNK})


def cases(run):
    (gpu_cases if run.on_gpu else cpu_cases)(run)


def main(argv=None) -> list[dict]:
    return run_benchmark("recurrent", cases, __doc__, argv)


if __name__ == "__main__":
    main()
