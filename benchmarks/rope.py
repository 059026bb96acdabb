"""Benchmark RoPE on q and k: the fused kernel against the eager torch reference, and Liger-Kernel if installed.

On CUDA it times ``labs.rope.apply_rope_qk`` (the Triton kernel, one launch for
q and k); on a CPU the torch path, which is what a CPU reader runs. RoPE reads
q and k once and writes them once, so a device-to-device copy of the same bytes
(``clone``), timed in the same run, is the speed limit: "of copy" is our GB/s
over the copy's. Liger-Kernel's fused RoPE is a second anchor on CUDA when it
imports.

Run: ``python benchmarks/rope.py`` (``make bench`` runs every script). It
prints a table and appends one record per case to ``benchmarks/results/rope.jsonl``
(the schema: ``labs.bench.RECORD_KEYS``).
"""

from __future__ import annotations

import torch

import labs
from labs.bench import optional_anchor, run_benchmark
from labs.rope import apply_rope_qk, reference, rope_frequencies

EAGER = "labs.rope.reference.apply_rope on q and k, eager"
LIGER = "liger_kernel liger_rotary_pos_emb"


def shapes(run):
    """(batch, q heads, k heads, T, D) and dtype."""
    if run.quick:
        yield (1, 2, 1, 16, 8), torch.float32
    elif run.on_gpu:
        for dtype in (torch.bfloat16, torch.float32):
            yield (4, 32, 32, 4096, 128), dtype
            yield (4, 32, 8, 4096, 128), dtype  # grouped-query attention: fewer key heads
            yield (1, 32, 8, 16384, 128), dtype
    else:
        yield (1, 8, 8, 512, 64), torch.float32
        yield (2, 8, 2, 1024, 64), torch.float32


def cases(run):
    dev = run.device
    liger = optional_anchor("liger_kernel.transformers.rope", "liger_rotary_pos_emb", "Liger-Kernel") if run.on_gpu else None
    g = labs.generator("benchmark", device=dev)
    for (batch, hq, hk, seq_len, dim), dtype in shapes(run):
        q = torch.randn(batch, hq, seq_len, dim, device=dev, dtype=dtype, generator=g)
        k = torch.randn(batch, hk, seq_len, dim, device=dev, dtype=dtype, generator=g)
        positions = torch.arange(seq_len, device=dev)
        inv_freq = rope_frequencies(dim)[0].to(dev)
        qg, kg = q.clone().requires_grad_(), k.clone().requires_grad_()
        dq, dk = (torch.randn(x.shape, device=dev, dtype=dtype, generator=g) for x in (q, k))
        angles = positions.double()[:, None] * inv_freq.double()[None, :]
        cos = torch.cat((angles.cos(), angles.cos()), -1)[None].to(dtype)  # (1, T, D), half-split layout
        sin = torch.cat((angles.sin(), angles.sin()), -1)[None].to(dtype)

        def grads(fn):
            return lambda: torch.autograd.grad(fn(qg, kg), (qg, kg), (dq, dk))

        def eager(a, b):
            return reference.apply_rope(a, positions, inv_freq), reference.apply_rope(b, positions, inv_freq)

        def ours(a, b):
            return apply_rope_qk(a, b, positions, inv_freq)

        def liger_qk(a, b):
            return liger(a, b, cos, sin)

        passes = {  # pass -> (ours, eager, Liger, a copy of the same bytes, read-and-write rounds)
            "forward": (lambda: ours(q, k), lambda: eager(q, k), lambda: liger_qk(q, k),
                        lambda: (q.clone(), k.clone()), 1),
            "fwd+bwd": (grads(ours), grads(eager), grads(liger_qk),
                        lambda: (q.clone(), k.clone(), dq.clone(), dk.clone()), 2),
        }
        shape = {"q": q.shape, "k": k.shape}
        for name, (ours_fn, eager_fn, liger_fn, copy_fn, rounds) in passes.items():
            gbytes = rounds * 2 * (q.numel() + k.numel()) * q.element_size() / 1e9  # read + write, per round
            copy_gbps = run.copy_bandwidth(copy_fn, gbytes)
            fields = dict(shape=shape, dtype=dtype, pass_=name, gbytes=gbytes, copy_gbps=copy_gbps)
            ours_ms = run.time(ours_fn)
            run.record("apply_rope_qk", median_ms=ours_ms, anchor=EAGER, anchor_median_ms=run.time(eager_fn), **fields)
            if liger is not None:
                run.record("apply_rope_qk", median_ms=ours_ms, anchor=LIGER, anchor_median_ms=run.time(liger_fn),
                           **fields)


def main(argv=None) -> list[dict]:
    return run_benchmark("rope", cases, __doc__, argv)


if __name__ == "__main__":
    main()
