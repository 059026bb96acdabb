"""Benchmark the diffusion samplers with an MLP score model: one batched sampling run against its network calls.

Every sampler is batched: ``median_ms`` is one sampling run of the whole batch
(samples per second = batch / time, in ``params``). The anchor is the cost of
the score evaluations alone (NFE network calls on the same batch), so ours /
anchor shows what the sampler adds around the network. The network is
untrained: speed does not depend on the weights. On CUDA the same code runs on
the GPU.

Run: ``python benchmarks/diffusion.py`` (``make bench`` runs every script). It
prints a table and appends one record per case to
``benchmarks/results/diffusion.jsonl`` (the schema: ``labs.bench.RECORD_KEYS``).
"""

from __future__ import annotations

import torch

import labs
from labs.bench import run_benchmark
from labs.diffusion import VPSDE, ScoreMLP, euler_maruyama, predictor_corrector, probability_flow_sample

HIDDEN, DEPTH = 128, 3
BETA_MIN, BETA_MAX, N = 0.1, 20.0, 1000
ANCHOR = "NFE score-model calls on the same batch, no sampler"


def sizes(run):
    """(sampler, batch, steps): the same number of score evaluations (NFE) for each sampler."""
    batches, steps = ((64,), 4) if run.quick else ((4096, 65536, 1048576), 100) if run.on_gpu else ((1024, 4096), 20)
    for batch in batches:
        yield "euler_maruyama", batch, steps
        yield "predictor_corrector", batch, steps // 2
        yield "probability_flow_heun", batch, steps // 2


def cases(run):
    dev, sde = run.device, VPSDE(BETA_MIN, BETA_MAX, N)
    model = ScoreMLP(2, sde, hidden=HIDDEN, depth=DEPTH).to(dev).eval()
    samplers = {
        "euler_maruyama": lambda b, n, g: euler_maruyama(sde, model, (b, 2), n, device=dev, generator=g),
        "predictor_corrector": lambda b, n, g: predictor_corrector(sde, model, (b, 2), n, device=dev, generator=g),
        "probability_flow_heun": lambda b, n, g: probability_flow_sample(
            sde, model, (b, 2), n, method="heun", device=dev, generator=g),
    }
    repeats = 10 if run.on_gpu else 3
    for sampler, batch, steps in sizes(run):
        generator = labs.generator(f"diffusion/{sampler}", device=dev)
        nfe = samplers[sampler](batch, steps, generator).nfe
        ms = run.time(lambda: samplers[sampler](batch, steps, generator), warmup=1, repeats=repeats)
        x = torch.randn(batch, 2, device=dev, generator=generator)
        t = torch.full((batch,), 0.5, device=dev)

        def network_only():
            with torch.no_grad():
                for _ in range(nfe):
                    model(x, t)

        run.record(sampler, shape=[batch, 2], dtype=torch.float32, median_ms=ms, anchor=ANCHOR,
                   anchor_median_ms=run.time(network_only, warmup=1, repeats=repeats),
                   params={"steps": steps, "nfe": nfe, "samples_per_s": round(batch / (ms / 1e3)),
                           "model": f"ScoreMLP(dim=2, hidden={HIDDEN}, depth={DEPTH})",
                           "sde": f"VPSDE({BETA_MIN:g}, {BETA_MAX:g}, {N})"})


def main(argv=None) -> list[dict]:
    return run_benchmark("diffusion", cases, __doc__, argv)


if __name__ == "__main__":
    main()
