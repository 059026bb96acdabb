"""Benchmark RoPE on q and k: the fused kernel, the eager torch reference, and Liger-Kernel if installed.

Run: ``python benchmarks/rope.py`` (``--no-record`` to print only). Prints a
table and appends one JSON record per case to ``benchmarks/results/rope.jsonl``.
On CUDA it times ``labs.rope.apply_rope_qk`` (the Triton kernel) and reports
its achieved bandwidth against a device-to-device copy of the same tensors
(``torch.clone``) measured in the same run; on a CPU it times the torch path,
which is what a CPU reader runs. RoPE reads q and k once and writes them once,
so the copy is the speed limit.
"""

from __future__ import annotations

import argparse

import torch

import labs
from labs.bench import append_results, median_ms, run_header
from labs.rope import apply_rope_qk, reference, rope_frequencies


def liger_rope():
    """Liger-Kernel's fused RoPE (q, k, cos, sin) -> (q, k), or the reason it is unavailable."""
    try:
        from liger_kernel.transformers.rope import liger_rotary_pos_emb
    except Exception as error:  # not installed, or a broken install
        return None, f"not installed ({type(error).__name__})"
    return liger_rotary_pos_emb, "liger_kernel.transformers.rope.liger_rotary_pos_emb"


def cases(on_gpu: bool):
    """(batch, q heads, k heads, T, D) and dtype."""
    if on_gpu:
        for dtype in (torch.bfloat16, torch.float32):
            yield (4, 32, 32, 4096, 128), dtype
            yield (4, 32, 8, 4096, 128), dtype  # grouped-query attention: fewer key heads
            yield (1, 32, 8, 16384, 128), dtype
    else:
        yield (1, 8, 8, 512, 64), torch.float32
        yield (2, 8, 2, 1024, 64), torch.float32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to results/")
    args = parser.parse_args()

    dev = labs.device()
    on_gpu = dev.type == "cuda"
    liger, liger_status = liger_rope() if on_gpu else (None, "not timed on CPU")
    run = run_header("rope", dev) | {
        "anchor": "labs.rope.reference.apply_rope on q and k, eager",
        "copy": "q.clone() and k.clone() (device-to-device copy of the same bytes)",
        "liger": liger_status,
    }
    print(f"{run['device']} | {run['backend']} | Liger-Kernel: {liger_status}")
    print(f"{'B,Hq,Hk,T,D':>22} {'dtype':>9} {'pass':>8} {'labs ms':>8} {'eager ms':>9} {'liger ms':>9} "
          f"{'labs GB/s':>9} {'copy GB/s':>9} {'of copy':>7}")
    records = []
    for (batch, hq, hk, seq_len, dim), dtype in cases(on_gpu):
        q = torch.randn(batch, hq, seq_len, dim, device=dev, dtype=dtype)
        k = torch.randn(batch, hk, seq_len, dim, device=dev, dtype=dtype)
        positions = torch.arange(seq_len, device=dev)
        inv_freq = rope_frequencies(dim)[0].to(dev)
        qg, kg = q.clone().requires_grad_(), k.clone().requires_grad_()
        dq, dk = torch.randn_like(q), torch.randn_like(k)
        angles = positions.double()[:, None] * inv_freq.double()[None, :]
        cos = torch.cat((angles.cos(), angles.cos()), -1)[None].to(dtype)  # (1, T, D), half-split layout
        sin = torch.cat((angles.sin(), angles.sin()), -1)[None].to(dtype)

        def grads(fn):
            return lambda: torch.autograd.grad(fn(qg, kg), (qg, kg), (dq, dk))

        def eager(a, b):
            return reference.apply_rope(a, positions, inv_freq), reference.apply_rope(b, positions, inv_freq)

        def ours(a, b):
            return apply_rope_qk(a, b, positions, inv_freq)

        passes = {
            "forward": (lambda: ours(q, k), lambda: eager(q, k), (lambda: liger(q, k, cos, sin)) if liger else None,
                        lambda: (q.clone(), k.clone()), 1),
            "fwd+bwd": (grads(ours), grads(eager), grads(lambda a, b: liger(a, b, cos, sin)) if liger else None,
                        lambda: (q.clone(), k.clone(), dq.clone(), dk.clone()), 2),
        }
        for name, (ours_fn, eager_fn, liger_fn, copy_fn, rounds) in passes.items():
            ours_ms, eager_ms, copy_ms = median_ms(ours_fn), median_ms(eager_fn), median_ms(copy_fn)
            liger_ms = median_ms(liger_fn) if liger_fn else None
            gbytes = rounds * 2 * (q.numel() + k.numel()) * q.element_size() / 1e9  # read + write, per round
            record = run | {
                "shape_q": list(q.shape), "shape_k": list(k.shape),
                "dtype": str(dtype).removeprefix("torch."), "pass": name,
                "median_ms": ours_ms, "gbps": gbytes / (ours_ms / 1e3),
                "anchor_median_ms": eager_ms, "anchor_gbps": gbytes / (eager_ms / 1e3), "speedup": eager_ms / ours_ms,
                "copy_median_ms": copy_ms, "copy_gbps": gbytes / (copy_ms / 1e3), "fraction_of_copy": copy_ms / ours_ms,
                "liger_median_ms": liger_ms, "speedup_vs_liger": liger_ms / ours_ms if liger_ms else None,
            }
            records.append(record)
            liger_text = f"{liger_ms:9.3f}" if liger_ms else f"{'-':>9}"
            print(f"{str((batch, hq, hk, seq_len, dim)):>22} {record['dtype']:>9} {name:>8} {ours_ms:8.3f} "
                  f"{eager_ms:9.3f} {liger_text} {record['gbps']:9.1f} {record['copy_gbps']:9.1f} "
                  f"{record['fraction_of_copy']:7.2f}")
    if not args.no_record:
        append_results("rope", records)


if __name__ == "__main__":
    main()
