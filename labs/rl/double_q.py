"""Maximisation bias and double Q-learning (Sutton and Barto, Example 6.7), many runs at once.

From state A, *right* ends the episode with reward 0 and *left* moves to B with
reward 0; from B each of ``b_actions`` actions ends the episode with a reward
drawn from N(-0.1, 1). Left is worse on average, but Q-learning's target
``max_b Q(B, b)`` is the maximum of noisy estimates, biased upwards, so it
prefers left for a long time. Double Q-learning (van Hasselt 2010) keeps two
tables; one picks the maximising action, the other values it.
"""

from __future__ import annotations

import torch

from .._checks import choice, real_number, whole_number
from .._checks import generator as check_generator
from .._threads import threads
from .control import epsilon_greedy

LEFT, RIGHT = 0, 1


@threads(1)
def maximisation_bias(method: str, *, episodes: int, runs: int, generator: torch.Generator, alpha: float = 0.1,
                      epsilon: float = 0.1, b_actions: int = 10, mean: float = -0.1) -> torch.Tensor:
    """Run ``method`` ("q_learning" or "double_q") on Example 6.7 with epsilon-greedy behaviour
    (with respect to ``Q1 + Q2`` for double Q). Returns whether the first action of each episode
    was *left*, (runs, episodes) booleans."""
    fn = "maximisation_bias"
    choice(fn, "method", method, ("q_learning", "double_q"))
    episodes, runs = whole_number(fn, "episodes", episodes), whole_number(fn, "runs", runs)
    b_actions = whole_number(fn, "b_actions", b_actions)
    alpha = real_number(fn, "alpha (the step size)", alpha, low=0.0, low_open=True)
    epsilon = real_number(fn, "epsilon", epsilon, low=0.0, high=1.0)
    mean = real_number(fn, "mean", mean)
    generator = check_generator(fn, "generator", generator)
    ar = torch.arange(runs)
    tables = 2 if method == "double_q" else 1
    qa = torch.zeros(tables, runs, 2, dtype=torch.float64)  # Q(A, left), Q(A, right)
    qb = torch.zeros(tables, runs, b_actions, dtype=torch.float64)
    went_left = torch.zeros(runs, episodes, dtype=torch.bool)
    for episode in range(episodes):
        action = epsilon_greedy(qa.sum(0), epsilon, generator)
        left = action == LEFT
        went_left[:, episode] = left
        b_action = epsilon_greedy(qb.sum(0), epsilon, generator)
        reward = mean + torch.randn(runs, generator=generator, dtype=torch.float64)
        if method == "q_learning":
            target_a = torch.where(left, qb[0].amax(-1), torch.zeros(runs, dtype=torch.float64))
            qa[0, ar, action] += alpha * (target_a - qa[0, ar, action])
            qb[0, ar, b_action] += torch.where(left, alpha * (reward - qb[0, ar, b_action]), torch.zeros(runs, dtype=torch.float64))
        else:
            first = torch.rand(runs, generator=generator, dtype=torch.float64) < 0.5  # which table to update
            upd, other = torch.where(first, 0, 1), torch.where(first, 1, 0)
            best = qb[upd, ar].argmax(-1)  # the updated table picks the action, the other one values it
            target_a = torch.where(left, qb[other, ar, best], torch.zeros(runs, dtype=torch.float64))
            qa[upd, ar, action] += alpha * (target_a - qa[upd, ar, action])
            qb[upd, ar, b_action] += torch.where(left, alpha * (reward - qb[upd, ar, b_action]), torch.zeros(runs, dtype=torch.float64))
    return went_left
