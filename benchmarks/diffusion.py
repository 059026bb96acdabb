"""Benchmark the diffusion samplers: samples per second with an MLP score model.

Run: ``python benchmarks/diffusion.py`` (``--no-record`` prints only). Prints a
table and appends one JSON record per case to ``benchmarks/results/diffusion.jsonl``.
Every sampler is batched, so throughput is (batch size) / (wall time of one
sampling run); on CUDA the same code runs on the GPU. The anchor is the cost of
the score evaluations alone (NFE network calls on the batch), so
``overhead`` = time / anchor time shows what the sampler adds around the network.
The network is untrained: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse

import torch

import labs
from labs.bench import append_results, median_ms, run_header
from labs.diffusion import VPSDE, ScoreMLP, euler_maruyama, predictor_corrector, probability_flow_sample


def cases(on_gpu: bool):
    batches, steps = ((4096, 65536, 1048576), 100) if on_gpu else ((1024, 4096), 20)
    for batch in batches:  # the same number of score evaluations (NFE) for each sampler
        yield "euler_maruyama", batch, steps
        yield "predictor_corrector", batch, steps // 2
        yield "probability_flow_heun", batch, steps // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to results/")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    dev = labs.device()
    on_gpu = dev.type == "cuda"
    sde = VPSDE()
    hidden, depth = 128, 3
    torch.manual_seed(0)
    model = ScoreMLP(2, sde, hidden=hidden, depth=depth).to(dev).eval()
    run = run_header("diffusion", dev) | {
        "torch_threads": torch.get_num_threads(),
        "model": f"ScoreMLP(dim=2, hidden={hidden}, depth={depth}), float32",
        "sde": "VPSDE(0.1, 20, 1000)",
        "anchor": "NFE score-model calls on the same batch, no sampler",
    }
    samplers = {
        "euler_maruyama": lambda b, n, g: euler_maruyama(sde, model, (b, 2), n, device=dev, generator=g),
        "predictor_corrector": lambda b, n, g: predictor_corrector(sde, model, (b, 2), n, device=dev, generator=g),
        "probability_flow_heun": lambda b, n, g: probability_flow_sample(sde, model, (b, 2), n, method="heun", device=dev, generator=g),
    }
    records = []
    print(f"{run['device']} | {run['backend']} | torch threads {run['torch_threads']}")
    print(f"{'sampler':>22} {'batch':>8} {'steps':>6} {'NFE':>5} {'ms':>10} {'samples/s':>12} {'overhead':>9}")
    for sampler, batch, steps in cases(on_gpu):
        generator = torch.Generator(device=dev).manual_seed(0)
        nfe = samplers[sampler](batch, steps, generator).nfe
        repeats = 3 if not on_gpu else 10
        ms = median_ms(lambda: samplers[sampler](batch, steps, generator), warmup=1, repeats=repeats)
        x = torch.randn(batch, 2, device=dev)
        t = torch.full((batch,), 0.5, device=dev)

        def network_only():
            with torch.no_grad():
                for _ in range(nfe):
                    model(x, t)

        anchor_ms = median_ms(network_only, warmup=1, repeats=repeats)
        record = run | {
            "sampler": sampler,
            "batch": batch,
            "steps": steps,
            "nfe": nfe,
            "median_ms": ms,
            "samples_per_s": batch / (ms / 1e3),
            "anchor_median_ms": anchor_ms,
            "overhead": ms / anchor_ms,
        }
        records.append(record)
        print(f"{sampler:>22} {batch:8d} {steps:6d} {nfe:5d} {ms:10.1f} {record['samples_per_s']:12,.0f} {record['overhead']:9.2f}")
    if not args.no_record:
        append_results("diffusion", records)


if __name__ == "__main__":
    main()
