"""Environment steps per second: all runs in one tensor operation against a Python loop over runs.

Times TD(0) prediction on the 5-state random walk and Q-learning on cliff
walking, each for ``runs`` independent runs of 50 episodes: vectorised
(``labs.rl`` as the book uses it, all runs at once) against the same function
called once per run (``runs=1``) in a Python loop. ``median_ms`` is one whole
vectorised learning run; the loop's rate does not depend on the number of runs,
so it is timed over a fixed number of runs and its ``anchor_median_ms`` is
that loop's time per environment step times the vectorised run's steps (the
loop's time for the same amount of experience). ``params`` holds the runs,
episodes, environment steps and both rates in steps per second. Uses CUDA when
present (the loop is timed on the same device).

Run: ``python benchmarks/td.py`` (``make bench`` runs every script). It prints
a table and appends one record per case to ``benchmarks/results/td.jsonl`` (the
schema: ``labs.bench.RECORD_KEYS``).
"""

from __future__ import annotations

import torch

import labs
from labs import rl
from labs.bench import run_benchmark

LOOP = "the same labs.rl function, runs=1, in a Python loop (its time per env step x the same steps)"


def td0_case(mdp, runs, episodes, generator):
    policy = rl.uniform_policy(mdp)
    stream = rl.sample_transitions(mdp, policy, episodes=episodes, runs=runs, generator=generator)
    table = torch.eye(mdp.n_states, dtype=mdp.P.dtype, device=mdp.P.device) * (~mdp.terminal)[:, None]
    init = torch.tensor(0.5, dtype=mdp.P.dtype, device=mdp.P.device)
    rl.prediction.linear_prediction(stream, table, alpha=0.1, gamma=1.0, init=init, method="td", episodes=episodes)
    return int(stream.active.sum())


def q_learning_case(mdp, runs, episodes, generator):
    result = rl.q_learning(mdp, alpha=0.5, epsilon=0.1, episodes=episodes, runs=runs, generator=generator)
    return int(result.lengths.sum())


CASES = {"td0 random walk": (rl.random_walk, td0_case), "q-learning cliff": (rl.cliff_walking, q_learning_case)}


def cases(run):
    dev = run.device
    episodes = 5 if run.quick else 50
    run_counts = [2] if run.quick else [1, 100, 1000, 10000] if run.on_gpu else [1, 100, 1000]
    loop_runs = 2 if run.quick else 20  # the loop's rate does not depend on the number of runs

    for name, (build, case) in CASES.items():
        mdp = build().to(dev)

        def vectorised(runs):  # the same runs every call: a fresh generator for the stream
            return case(mdp, runs, episodes, labs.generator(f"td/{name}", device=dev))

        def loop():
            generator = labs.generator(f"td/{name}/loop", device=dev)
            return sum(case(mdp, 1, episodes, generator) for _ in range(loop_runs))

        loop_steps = loop()  # also the warm-up
        loop_ms_per_step = run.time(loop, warmup=0, repeats=3) / loop_steps
        for runs in run_counts:
            steps = vectorised(runs)
            ms = run.time(lambda: vectorised(runs), warmup=1, repeats=3)
            run.record(name, shape=[runs], dtype=mdp.P.dtype, median_ms=ms, anchor=LOOP,
                       anchor_median_ms=loop_ms_per_step * steps,
                       params={"runs": runs, "episodes": episodes, "env_steps": steps,
                               "steps_per_s": round(steps / (ms / 1e3)),
                               "anchor_steps_per_s": round(1 / (loop_ms_per_step / 1e3))})


def main(argv=None) -> list[dict]:
    return run_benchmark("td", cases, __doc__, argv)


if __name__ == "__main__":
    main()
