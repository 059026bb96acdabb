"""Control: Sarsa, Q-learning and expected Sarsa with epsilon-greedy exploration, many runs at once.

All three update ``Q(S, A) += alpha (target - Q(S, A))`` after every step and
differ only in the target's estimate of the next state's value:

* Sarsa (on-policy):      ``R + gamma Q(S', A')`` with ``A'`` the action actually taken next;
* Q-learning (off-policy): ``R + gamma max_a Q(S', a)``;
* expected Sarsa:         ``R + gamma sum_a pi(a|S') Q(S', a)`` under the epsilon-greedy ``pi``.

Each run restarts on its own as soon as its episode ends, so no run waits for
the slowest one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import checks
from .._checks import choice, flag, whole_number
from .._checks import generator as check_generator
from .._threads import threads
from .planning import epsilon_greedy_probs

CONTROL_METHODS = ("sarsa", "q_learning", "expected_sarsa")


class ControlResult(NamedTuple):
    """``rewards`` and ``lengths`` (runs, episodes): sum of rewards and number of steps of each
    episode; ``q`` (runs, S, A): the action values at the end. ``trace`` (with ``record=True``):
    the experience, (steps, runs) tensors ``states``, ``actions``, ``rewards``, ``next_states``,
    ``next_actions`` (the action chosen in ``next_states``; a fresh start's action after an
    episode ends) and ``active``."""

    rewards: torch.Tensor
    lengths: torch.Tensor
    q: torch.Tensor
    trace: dict | None = None


def epsilon_greedy(q: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
    """One action per row of ``q`` (runs, A): uniformly random with probability epsilon, else a
    best action, ties broken at random (so an all-zero table does not always pick action 0)."""
    runs, A = q.shape
    u = torch.rand(runs, 2, generator=generator, device=generator.device, dtype=q.dtype).to(q.device)
    random_action = (u[:, 0] * A).long().clamp_max(A - 1)
    best = q == q.amax(-1, keepdim=True)
    noise = torch.rand(runs, A, generator=generator, device=generator.device, dtype=q.dtype).to(q.device)
    greedy_action = torch.where(best, noise, torch.full_like(noise, -1.0)).argmax(-1)
    return torch.where(u[:, 1] < epsilon, random_action, greedy_action)


@threads(1)
def td_control(mdp, method: str, *, alpha, epsilon, episodes, runs, generator: torch.Generator, gamma=1.0,
               max_steps: int = 1_000_000, fn: str = "td_control", record: bool = False) -> ControlResult:
    """Learn ``Q`` with ``method`` (one of ``CONTROL_METHODS``) for ``episodes`` episodes in each of
    ``runs`` runs, drawing every random number from ``generator``.

    ``alpha``, ``epsilon`` and ``gamma`` are numbers, or tensors with one value per run (so a
    sweep over hyper-parameters is one call). ``record=True`` keeps the experience in ``trace``."""
    mdp = checks.mdp(fn, mdp)
    choice(fn, "method", method, CONTROL_METHODS)
    record = flag(fn, "record", record)
    episodes, runs = whole_number(fn, "episodes", episodes), whole_number(fn, "runs", runs)
    alpha = checks.per_run(fn, "alpha (the step size)", alpha, runs, low=0.0, low_open=True)
    gamma = checks.per_run(fn, "gamma (the discount)", gamma, runs, low=0.0, high=1.0)
    epsilon = checks.per_run(fn, "epsilon", epsilon, runs, low=0.0, high=1.0)
    if isinstance(alpha, torch.Tensor) or isinstance(gamma, torch.Tensor) or isinstance(epsilon, torch.Tensor):
        alpha, gamma, epsilon = (torch.as_tensor(x, dtype=mdp.P.dtype).to(mdp.P.device).expand(runs) for x in (alpha, gamma, epsilon))
    generator = check_generator(fn, "generator", generator)
    if not mdp.terminal.any():
        raise ValueError(f"{fn}: {mdp.name!r} has no terminal state, so its episodes never end")
    dev, dtype = mdp.P.device, mdp.P.dtype
    ar = torch.arange(runs, device=dev)
    q = torch.zeros(runs, mdp.n_states, mdp.n_actions, dtype=dtype, device=dev)
    rewards = torch.zeros(runs, episodes + 1, dtype=dtype, device=dev)  # last column: scratch
    lengths = torch.zeros(runs, episodes + 1, dtype=torch.long, device=dev)
    finished = torch.zeros(runs, dtype=torch.long, device=dev)
    state = mdp.reset(runs, generator)
    action = epsilon_greedy(q[ar, state], epsilon, generator)
    trace = [] if record else None
    for step in range(max_steps):
        active = finished < episodes
        if step % 64 == 0 and not bool(active.any()):
            break
        trace_state = state
        next_state, reward = mdp.step(state, action, generator)
        slot = torch.where(active, finished, torch.full_like(finished, episodes))
        rewards[ar, slot] += reward
        lengths[ar, slot] += 1
        q_next = q[ar, next_state]  # zero at terminal states, which are never updated
        if method == "sarsa":
            next_action = epsilon_greedy(q_next, epsilon, generator)
            estimate = q_next[ar, next_action]
        elif method == "q_learning":
            estimate = q_next.amax(-1)
        else:
            estimate = (epsilon_greedy_probs(q_next, _column(epsilon)) * q_next).sum(-1)
        target = reward + gamma * estimate
        q[ar, state, action] += alpha * active * (target - q[ar, state, action])
        ends = mdp.terminal[next_state]
        finished += ends & active
        state = torch.where(ends, mdp.reset(runs, generator), next_state)
        fresh = epsilon_greedy(q[ar, state], epsilon, generator)
        previous_state, previous_action = trace_state, action
        action = torch.where(ends, fresh, next_action) if method == "sarsa" else fresh
        if record:
            trace.append((previous_state, previous_action, reward, next_state, action, active))
    else:
        raise RuntimeError(f"{fn}: {max_steps} steps were not enough for {episodes} episodes in every run")
    if record:
        names = ("states", "actions", "rewards", "next_states", "next_actions", "active")
        trace = {name: torch.stack(column) for name, column in zip(names, zip(*trace))}
    return ControlResult(rewards[:, :episodes], lengths[:, :episodes], q, trace)


def _column(x):
    """A per-run tensor as a column, to broadcast against (runs, A); a number as it is."""
    return x[:, None] if isinstance(x, torch.Tensor) else x


def sarsa(mdp, *, alpha, epsilon, episodes, runs, generator: torch.Generator, gamma=1.0) -> ControlResult:
    """On-policy TD control; see ``td_control``."""
    return td_control(mdp, "sarsa", alpha=alpha, epsilon=epsilon, episodes=episodes, runs=runs,
                      gamma=gamma, generator=generator, fn="sarsa")


def q_learning(mdp, *, alpha, epsilon, episodes, runs, generator: torch.Generator, gamma=1.0) -> ControlResult:
    """Off-policy TD control towards the greedy policy; see ``td_control``."""
    return td_control(mdp, "q_learning", alpha=alpha, epsilon=epsilon, episodes=episodes, runs=runs,
                      gamma=gamma, generator=generator, fn="q_learning")


def expected_sarsa(mdp, *, alpha, epsilon, episodes, runs, generator: torch.Generator, gamma=1.0) -> ControlResult:
    """Sarsa with the expectation over the next action instead of a sample; see ``td_control``."""
    return td_control(mdp, "expected_sarsa", alpha=alpha, epsilon=epsilon, episodes=episodes, runs=runs,
                      gamma=gamma, generator=generator, fn="expected_sarsa")


@threads(1)
def greedy_return(mdp, q: torch.Tensor, *, generator: torch.Generator,
                  max_steps: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Follow the greedy policy of each run's ``q`` (runs, S, A) from the start state, without
    exploration: ``(return, steps)`` per run (a run still going after ``max_steps`` stops there).
    ``generator`` draws the start states and the transitions of a stochastic ``mdp``."""
    fn = "greedy_return"
    mdp = checks.mdp(fn, mdp)
    if not isinstance(q, torch.Tensor) or q.ndim != 3 or tuple(q.shape[1:]) != (mdp.n_states, mdp.n_actions):
        shape = tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__
        raise ValueError(f"{fn}: q must be a tensor of shape (runs, S, A) = (runs, {mdp.n_states}, {mdp.n_actions}), got {shape}")
    max_steps = whole_number(fn, "max_steps", max_steps)
    generator = check_generator(fn, "generator", generator)
    runs = q.shape[0]
    ar = torch.arange(runs, device=q.device)
    state = mdp.reset(runs, generator)
    total = torch.zeros(runs, dtype=q.dtype, device=q.device)
    steps = torch.zeros(runs, dtype=torch.long, device=q.device)
    for _ in range(max_steps):
        going = ~mdp.terminal[state]
        if not bool(going.any()):
            break
        next_state, reward = mdp.step(state, q[ar, state].argmax(-1), generator)
        total += reward * going
        steps += going
        state = torch.where(going, next_state, state)
    return total, steps
