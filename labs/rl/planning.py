"""Planning with a known model: the Bellman equation solved exactly and by iteration.

For a policy ``pi`` the MDP becomes a Markov reward process with transition
matrix ``P_pi[s, s'] = sum_a pi(a|s) P[s, a, s']`` and reward vector
``r_pi[s] = sum_a pi(a|s) r[s, a]``; its values solve ``v = r_pi + gamma P_pi v``.
"""

from __future__ import annotations

import torch

from . import checks
from .._checks import positive, whole_number


def uniform_policy(mdp) -> torch.Tensor:
    """Every action equally likely in every state."""
    return torch.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions, dtype=mdp.P.dtype, device=mdp.P.device)


def markov_reward_process(mdp, policy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P_pi, r_pi)``: the state-to-state chain and expected one-step reward under ``policy``."""
    return torch.einsum("sa,sat->st", policy, mdp.P), (policy * mdp.r).sum(-1)


def bellman_solve(P_pi: torch.Tensor, r_pi: torch.Tensor, gamma: float, terminal: torch.Tensor) -> torch.Tensor:
    """The closed form ``v = (I - gamma P_pi)^{-1} r_pi`` on the non-terminal states; ``v = 0`` on terminals.

    Terminal states are absorbing with zero reward, so dropping them leaves
    ``I - gamma P`` invertible even at ``gamma = 1`` as long as every episode ends.
    """
    keep = ~terminal
    A = torch.eye(int(keep.sum()), dtype=P_pi.dtype, device=P_pi.device) - gamma * P_pi[keep][:, keep]
    v = torch.zeros_like(r_pi)
    v[keep] = torch.linalg.solve(A, r_pi[keep])
    return v


def evaluate_policy(mdp, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """The exact state values ``v_pi`` (S,) from the Bellman equation in matrix form."""
    fn = "evaluate_policy"
    mdp = checks.mdp(fn, mdp)
    policy, gamma = checks.policy(fn, mdp, policy), checks.gamma(fn, gamma)
    P_pi, r_pi = markov_reward_process(mdp, policy)
    v = bellman_solve(P_pi, r_pi, gamma, mdp.terminal)
    if not torch.isfinite(v).all():
        raise ValueError(f"{fn}: I - gamma P_pi is singular: with gamma = {gamma} some episodes never end")
    return v


def iterative_policy_evaluation(mdp, policy: torch.Tensor, gamma: float, sweeps: int) -> torch.Tensor:
    """Values after each of ``sweeps`` synchronous sweeps ``v <- r_pi + gamma P_pi v`` from ``v = 0``:
    shape (sweeps + 1, S)."""
    fn = "iterative_policy_evaluation"
    mdp = checks.mdp(fn, mdp)
    policy, gamma = checks.policy(fn, mdp, policy), checks.gamma(fn, gamma)
    sweeps = whole_number(fn, "sweeps", sweeps)
    P_pi, r_pi = markov_reward_process(mdp, policy)
    history = [torch.zeros_like(r_pi)]
    for _ in range(sweeps):
        history.append(r_pi + gamma * P_pi @ history[-1])
    return torch.stack(history)


def value_iteration(mdp, gamma: float, *, tol: float = 1e-10, max_sweeps: int = 100_000):
    """Optimal values and a greedy optimal policy: iterate ``v <- max_a (r + gamma P v)`` until the
    largest change is below ``tol``. Returns ``(v_star, q_star, policy)``."""
    fn = "value_iteration"
    mdp = checks.mdp(fn, mdp)
    gamma = checks.gamma(fn, gamma)
    positive(fn, "tol", tol)
    max_sweeps = whole_number(fn, "max_sweeps", max_sweeps)
    v = torch.zeros(mdp.n_states, dtype=mdp.P.dtype, device=mdp.P.device)
    for _ in range(max_sweeps):
        q = mdp.r + gamma * mdp.P @ v
        q[mdp.terminal] = 0.0
        v_new = q.amax(-1)
        if (v_new - v).abs().max() < tol:
            return v_new, q, greedy_policy(q)
        v = v_new
    raise RuntimeError(f"{fn}: no convergence within {max_sweeps} sweeps (gamma = {gamma})")


def greedy_policy(q: torch.Tensor) -> torch.Tensor:
    """The deterministic policy that picks the first best action of ``q`` (..., S, A)."""
    return torch.nn.functional.one_hot(q.argmax(-1), q.shape[-1]).to(q.dtype)


def epsilon_greedy_probs(q: torch.Tensor, epsilon: float) -> torch.Tensor:
    """epsilon-greedy action probabilities for action values ``q`` (..., A): a random action with
    probability epsilon, else a best one (ties shared equally)."""
    best = (q == q.amax(-1, keepdim=True)).to(q.dtype)
    return epsilon / q.shape[-1] + (1 - epsilon) * best / best.sum(-1, keepdim=True)


def on_policy_distribution(mdp, policy: torch.Tensor) -> torch.Tensor:
    """The fraction of time spent in each state under ``policy`` (S,), the ``mu`` weighting of
    the value error. Episodic tasks: expected visits per episode ``eta = h + eta P`` over the
    non-terminal states, normalised. Continuing tasks: the stationary distribution."""
    fn = "on_policy_distribution"
    policy = checks.policy(fn, checks.mdp(fn, mdp), policy)
    P_pi, _ = markov_reward_process(mdp, policy)
    S = mdp.n_states
    if mdp.terminal.any():
        keep = ~mdp.terminal
        eye = torch.eye(int(keep.sum()), dtype=P_pi.dtype, device=P_pi.device)
        eta = torch.linalg.solve((eye - P_pi[keep][:, keep]).T, mdp.start[keep])
        mu = torch.zeros(S, dtype=P_pi.dtype, device=P_pi.device)
        mu[keep] = eta
    else:  # mu (P - I) = 0 with sum(mu) = 1, as a least-squares system
        A = torch.cat([(P_pi - torch.eye(S, dtype=P_pi.dtype, device=P_pi.device)).T, torch.ones(1, S, dtype=P_pi.dtype, device=P_pi.device)])
        b = torch.zeros(S + 1, dtype=P_pi.dtype, device=P_pi.device)
        b[-1] = 1.0
        mu = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    return mu / mu.sum()
