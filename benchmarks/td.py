"""Environment steps per second: all runs in one tensor operation vs a Python loop over runs.

Run: ``python benchmarks/td.py`` (``--no-record`` to only print). Times TD(0)
prediction on the 5-state random walk and Q-learning on cliff walking, each
for ``runs`` independent runs: once vectorised (``labs.rl`` as the book uses
it), once as a per-run Python loop calling the same function with ``runs=1``.
Appends one JSON record per case to ``benchmarks/results/td.jsonl``. Uses
CUDA when present (the vectorised path; the loop is timed on the same device).
"""

from __future__ import annotations

import argparse
import time

import torch

import labs
from labs import rl
from labs.bench import append_results, run_header


def td0_case(mdp, runs, generator):
    policy = rl.uniform_policy(mdp)
    stream = rl.sample_transitions(mdp, policy, episodes=EPISODES, runs=runs, generator=generator)
    table = torch.eye(mdp.n_states, dtype=mdp.P.dtype, device=mdp.P.device) * (~mdp.terminal)[:, None]
    rl.prediction.linear_prediction(stream, table, alpha=0.1, gamma=1.0, init=torch.tensor(0.5, dtype=mdp.P.dtype, device=mdp.P.device),
                                    method="td", episodes=EPISODES)
    return int(stream.active.sum())


def q_learning_case(mdp, runs, generator):
    result = rl.q_learning(mdp, alpha=0.5, epsilon=0.1, episodes=EPISODES, runs=runs, generator=generator)
    return int(result.lengths.sum())


EPISODES = 50
CASES = {"td0 random walk": (rl.random_walk, td0_case), "q-learning cliff": (rl.cliff_walking, q_learning_case)}


def steps_per_second(case, mdp, runs, dev, *, loop: bool) -> float:
    generator = torch.Generator(device=dev).manual_seed(0)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    steps = sum(case(mdp, 1, generator) for _ in range(runs)) if loop else case(mdp, runs, generator)
    sync()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to results/")
    args = parser.parse_args()

    dev = labs.device()
    run = run_header("td", dev) | {
        "anchor": "the same labs.rl function called once per run (runs=1) in a Python loop",
        "episodes": EPISODES,
    }
    run_counts = [1, 100, 1000, 10000] if dev.type == "cuda" else [1, 100, 1000]
    loop_runs = 100  # the loop's rate does not depend on the number of runs; 100 is enough to time it
    records = []
    print(f"{run['device']} | {run['backend']}")
    print(f"{'case':>18} {'runs':>6} {'vectorised steps/s':>19} {'loop steps/s':>13} {'speedup':>8}")
    for name, (build, case) in CASES.items():
        mdp = build().to(dev)
        case(mdp, 2, torch.Generator(device=dev).manual_seed(1))  # warm-up
        loop_rate = steps_per_second(case, mdp, loop_runs, dev, loop=True)
        for runs in run_counts:
            rate = steps_per_second(case, mdp, runs, dev, loop=False)
            record = run | {"case": name, "runs": runs, "steps_per_s": rate, "anchor_steps_per_s": loop_rate,
                            "speedup": rate / loop_rate}
            records.append(record)
            print(f"{name:>18} {runs:6d} {rate:19,.0f} {loop_rate:13,.0f} {rate / loop_rate:8.1f}")
    if not args.no_record:
        append_results("td", records)


if __name__ == "__main__":
    main()
