"""Benchmark causal linear attention: the chunked Triton kernel against FlashAttention, and the torch forms.

Run: ``python benchmarks/linear_attention.py`` (``--no-record`` to only print).
Appends one JSON record per case to ``benchmarks/results/linear_attention.jsonl``.

* On CUDA: forward+backward of ``linear_attention(method="chunk")`` (the Triton
  kernel, fp16) against ``F.scaled_dot_product_attention(is_causal=True)``
  (FlashAttention) and, when installed, flash-linear-attention's
  ``chunk_linear_attn``, at T = 1k .. 32k, with peak GPU memory.
* On a CPU: the forward pass of the three torch forms (``quadratic``,
  ``chunk``, ``recurrent``) at T = 128 .. 4096, with the size of the largest
  tensor each form materialises (computed from the shapes, not measured).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import labs
from labs.attention import linear_attention
from labs.bench import append_results, median_ms, run_header

CHUNK = 64


def fla_chunk():
    """flash-linear-attention's chunk kernel, or None with the reason."""
    try:
        from fla.ops.linear_attn import chunk_linear_attn
    except Exception as error:  # not installed, or a broken install
        return None, f"not installed ({type(error).__name__})"
    import fla

    return chunk_linear_attn, f"fla {getattr(fla, '__version__', '?')}"


def gpu_cases(dev, run, fla_fn):
    b, h, d = 2, 8, 64
    for t in (1024, 2048, 4096, 8192, 16384, 32768):
        q, k, v = (torch.randn(b, h, t, d, device=dev, dtype=torch.float16, requires_grad=True) for _ in range(3))
        d_out = torch.randn_like(v)

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

        timed = {"labs_chunk_triton": ours, "sdpa_flash": flash}
        if fla_fn is not None:
            timed["fla_chunk"] = fla_run
        record = run | {"shape": [b, h, t, d], "dtype": "float16", "pass": "fwd+bwd"}
        for name, fn in timed.items():
            torch.cuda.reset_peak_memory_stats(dev)
            record[f"{name}_ms"] = median_ms(fn, warmup=3, repeats=10)
            record[f"{name}_peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        record["median_ms"] = record["labs_chunk_triton_ms"]
        record["anchor_median_ms"] = record["sdpa_flash_ms"]
        record["speedup"] = record["sdpa_flash_ms"] / record["labs_chunk_triton_ms"]
        if fla_fn is not None:
            record["ratio_to_fla"] = record["labs_chunk_triton_ms"] / record["fla_chunk_ms"]
        yield record


def cpu_cases(dev, run):
    b, h, d = 1, 4, 32
    for t in (128, 256, 512, 1024, 2048, 4096):
        q, k, v = (torch.randn(b, h, t, d, device=dev) for _ in range(3))
        record = run | {"shape": [b, h, t, d], "dtype": "float32", "pass": "forward"}
        largest = {
            "quadratic": b * h * t * t,  # the T x T similarity matrix
            "chunk": b * h * max(t * CHUNK, -(-t // CHUNK) * d * d),  # chunk-local scores or the per-chunk states
            "recurrent": b * h * t * d,  # the stacked outputs; the state itself is only d x d
        }
        for method in ("quadratic", "chunk", "recurrent"):
            if method == "recurrent" and t > 512:  # a Python loop over time: too slow to be worth timing
                continue
            fn = lambda m=method: linear_attention(q, k, v, causal=True, method=m, chunk_size=CHUNK)  # noqa: E731
            record[f"{method}_ms"] = median_ms(fn, warmup=2, repeats=11)
            record[f"{method}_largest_mib"] = largest[method] * 4 / 2**20
        record["median_ms"] = record["chunk_ms"]
        record["anchor_median_ms"] = record["quadratic_ms"]
        record["speedup"] = record["quadratic_ms"] / record["chunk_ms"]
        yield record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to results/")
    args = parser.parse_args()

    dev = labs.device()
    on_gpu = dev.type == "cuda"
    if not on_gpu:
        torch.set_num_threads(1)  # one thread: steadier medians on a small, shared CPU
    fla_fn, fla_status = fla_chunk()
    run = run_header("linear_attention", dev) | {
        "flash_linear_attention": fla_status,
        "chunk_size": CHUNK,
        "cpu_threads": torch.get_num_threads(),
        "anchor": "F.scaled_dot_product_attention(is_causal=True)" if on_gpu else "linear_attention(method='quadratic')",
    }
    print(f"{run['device']} | {run['backend']} | flash-linear-attention: {fla_status}")
    records = []
    if on_gpu:
        print(f"{'T':>6} {'chunk (Triton) ms':>18} {'SDPA ms':>9} {'fla ms':>9} {'vs SDPA':>8} {'MiB ours/SDPA':>15}")
        for r in gpu_cases(dev, run, fla_fn):
            records.append(r)
            fla_ms = f"{r['fla_chunk_ms']:9.3f}" if "fla_chunk_ms" in r else f"{'n/a':>9}"
            print(f"{r['shape'][2]:>6} {r['labs_chunk_triton_ms']:18.3f} {r['sdpa_flash_ms']:9.3f} {fla_ms} "
                  f"{r['speedup']:8.2f} {r['labs_chunk_triton_peak_mib']:7.0f}/{r['sdpa_flash_peak_mib']:<7.0f}")
    else:
        print(f"{'T':>6} {'quadratic ms':>13} {'chunk ms':>9} {'recurrent ms':>13} {'T x T MiB':>10} {'chunk MiB':>10}")
        for r in cpu_cases(dev, run):
            records.append(r)
            rec_ms = f"{r['recurrent_ms']:13.2f}" if "recurrent_ms" in r else f"{'skipped':>13}"
            print(f"{r['shape'][2]:>6} {r['quadratic_ms']:13.2f} {r['chunk_ms']:9.2f} {rec_ms} "
                  f"{r['quadratic_largest_mib']:10.2f} {r['chunk_largest_mib']:10.2f}")
    if not args.no_record:
        append_results("linear_attention", records)


if __name__ == "__main__":
    main()
