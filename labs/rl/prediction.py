"""Prediction: learning ``v_pi`` from sampled experience, for many independent runs at once.

Under a fixed policy the experience does not depend on what is being learned,
so each function first samples a stream of transitions for all runs (a run
starts a new episode the step after its previous one ends), then walks the
stream once, updating every run's estimate in the same tensor operation.

Everything is linear in features ``Phi`` (S x d): ``v(s) = Phi[s] . w``. The
table is the special case ``Phi = I``, so TD(0) and semi-gradient TD share one
update:

    w <- w + alpha (target - Phi[S_t] . w) Phi[S_t]

with target ``R_{t+1} + gamma v(S_{t+1})`` for TD and the return ``G_t`` for
Monte Carlo.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import checks
from .._checks import generator as check_generator
from .._checks import choice, whole_number
from .._threads import threads
from .mdp import sample_actions
from .planning import markov_reward_process, on_policy_distribution


class Transitions(NamedTuple):
    """A stream of experience, (T, runs) each: ``S_t, R_{t+1}, S_{t+1}``, whether ``S_{t+1}`` ends
    an episode that counts, and whether the run still needed this step."""

    states: torch.Tensor
    rewards: torch.Tensor
    next_states: torch.Tensor
    ends: torch.Tensor
    active: torch.Tensor


@threads(1)
def sample_transitions(mdp, policy, *, episodes: int, runs: int, generator: torch.Generator,
                       max_steps: int | None = None) -> Transitions:
    """Run ``policy`` in ``runs`` independent copies of ``mdp`` until each has finished ``episodes``
    episodes (or ``max_steps`` steps have been taken, if given), drawing every random number from
    ``generator``. One Python step per time step, all runs in one tensor operation."""
    fn = "sample_transitions"
    mdp = checks.mdp(fn, mdp)
    policy = checks.policy(fn, mdp, policy)
    episodes, runs = whole_number(fn, "episodes", episodes), whole_number(fn, "runs", runs)
    if max_steps is not None:
        max_steps = whole_number(fn, "max_steps", max_steps)
    if not mdp.terminal.any():
        raise ValueError(f"{fn}: {mdp.name!r} has no terminal state, so its episodes never end")
    generator = check_generator(fn, "generator", generator)
    done = torch.zeros(runs, dtype=torch.long, device=mdp.P.device)
    state = mdp.reset(runs, generator)
    steps = []
    while bool((done < episodes).any()) and (max_steps is None or len(steps) < max_steps):
        active = done < episodes
        action = sample_actions(policy, state, generator)
        next_state, reward = mdp.step(state, action, generator)
        ends = mdp.terminal[next_state] & active
        steps.append((state, reward, next_state, ends, active))
        done += ends
        state = torch.where(mdp.terminal[next_state], mdp.reset(runs, generator), next_state)
    return Transitions(*(torch.stack(column) for column in zip(*steps)))


def concat_runs(streams) -> Transitions:
    """Streams sampled separately (one per seed, say) side by side as one stream: runs are
    concatenated, and a shorter stream is padded at its end with inactive steps."""
    streams = list(streams)
    if not streams or not all(isinstance(x, Transitions) for x in streams):
        raise TypeError(f"concat_runs: streams must be a non-empty list of Transitions, got {[type(x).__name__ for x in streams]}")
    T = max(x.states.shape[0] for x in streams)

    def pad(column):
        extra = T - column.shape[0]
        return torch.cat([column, torch.zeros(extra, *column.shape[1:], dtype=column.dtype, device=column.device)]) if extra else column

    return Transitions(*(torch.cat([pad(column) for column in columns], 1) for columns in zip(*streams)))


@threads(1)
def returns(stream: Transitions, gamma: float) -> torch.Tensor:
    """The return ``G_t = R_{t+1} + gamma G_{t+1}`` of every step, restarting at episode ends."""
    G = torch.zeros_like(stream.rewards)
    running = torch.zeros_like(stream.rewards[0])
    for t in range(len(G) - 1, -1, -1):
        ended = stream.ends[t] | ~stream.active[t]  # an inactive run's returns are never used
        running = stream.rewards[t] + gamma * torch.where(ended, torch.zeros_like(running), running)
        G[t] = running
    return G


@threads(1)
def linear_prediction(stream, features, *, alpha, gamma, init, method: str, episodes: int) -> torch.Tensor:
    """Walk ``stream`` once with the linear TD or MC update; weights after every episode,
    (runs, episodes + 1, d).

    ``alpha`` is a number (a constant step size), or a schedule: a function of the visit counts
    ``n`` (runs, d), how often each feature has been active so far in each run, this step
    included, returning the step size of every weight, e.g. ``lambda n: 1 / n`` (for a table,
    the n-th visit of a state gets the step 1/n)."""
    runs, d = stream.states.shape[1], features.shape[1]
    w = init.expand(runs, d).clone()
    visits = torch.zeros(runs, d, dtype=w.dtype, device=w.device)
    history = torch.empty(runs, episodes + 2, d, dtype=w.dtype, device=w.device)  # last slot: scratch
    history[:, 0] = w
    finished = torch.zeros(runs, dtype=torch.long, device=w.device)
    targets = returns(stream, gamma) if method == "mc" else None
    for t in range(stream.states.shape[0]):
        phi = features[stream.states[t]]
        if method == "td":
            target = stream.rewards[t] + gamma * (features[stream.next_states[t]] * w).sum(-1)
        else:
            target = targets[t]
        error = (target - (phi * w).sum(-1)) * stream.active[t]
        if callable(alpha):
            visits += (phi != 0) & stream.active[t][:, None]
            w += alpha(visits.clamp_min(1)) * error[:, None] * phi
        else:
            w += alpha * error[:, None] * phi
        ends = stream.ends[t]
        slot = torch.where(ends, finished + 1, torch.full_like(finished, episodes + 1))
        history[torch.arange(runs, device=w.device), slot] = w
        finished += ends
    return history[:, : episodes + 1]


@threads(1)
def minibatch_prediction(stream, features, *, alpha: float, gamma: float = 1.0, learners: int, method: str,
                         init=0.0, steps: int | None = None) -> torch.Tensor:
    """Semi-gradient TD (``method="td"``) or gradient MC (``"mc"``) in which each of ``learners``
    weight vectors learns from a pool of ``runs / learners`` parallel runs of ``stream`` (runs
    ``k * pool .. (k + 1) * pool - 1`` feed learner ``k``), taking at every time step one update
    with the mean over its pool:

        w <- w + alpha * mean_pool (target - Phi[S_t] . w) Phi[S_t]

    Averaging a pool shrinks the update's noise, so a constant ``alpha`` lands close to the
    fixed point (``b - A w = 0`` for TD). Runs ``steps`` steps (default: as long as every run is
    still active). Returns the weights after every step, (steps + 1, learners, d)."""
    fn = "minibatch_prediction"
    if not isinstance(stream, Transitions):
        raise TypeError(f"{fn}: stream must be a Transitions from sample_transitions, got {type(stream).__name__}")
    runs = stream.states.shape[1]
    learners = whole_number(fn, "learners", learners)
    if runs % learners:
        raise ValueError(f"{fn}: learners={learners} must divide the stream's runs ({runs})")
    choice(fn, "method", method, ("td", "mc"))
    alpha, gamma = checks.alpha(fn, alpha), checks.gamma(fn, gamma)
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        raise ValueError(f"{fn}: features must be a tensor of shape (S, d), got {getattr(features, 'shape', type(features).__name__)}")
    all_active = int(stream.active.all(1).long().cumprod(0).sum())
    steps = all_active if steps is None else whole_number(fn, "steps", steps)
    if steps > all_active:
        raise ValueError(f"{fn}: steps={steps} exceeds the {all_active} steps in which every run of the stream is active")
    pool, d = runs // learners, features.shape[1]
    features = features.to(stream.rewards.dtype)
    w = torch.as_tensor(init, dtype=features.dtype).expand(learners, d).clone()
    targets = returns(stream, gamma) if method == "mc" else None
    history = torch.empty(steps + 1, learners, d, dtype=w.dtype)
    history[0] = w
    for t in range(steps):
        phi = features[stream.states[t]].view(learners, pool, d)
        if method == "td":
            bootstrap = (features[stream.next_states[t]].view(learners, pool, d) * w[:, None]).sum(-1)
            target = stream.rewards[t].view(learners, pool) + gamma * bootstrap
        else:
            target = targets[t].view(learners, pool)
        error = target - (phi * w[:, None]).sum(-1)
        w += alpha * (error[..., None] * phi).mean(1)
        history[t + 1] = w
    return history


def _predict(fn, mdp, policy, features, *, alpha, episodes, runs, gamma, init, generator, method):
    mdp = checks.mdp(fn, mdp)
    policy = checks.policy(fn, mdp, policy)
    alpha, gamma = checks.alpha(fn, alpha), checks.gamma(fn, gamma)
    episodes, runs = whole_number(fn, "episodes", episodes), whole_number(fn, "runs", runs)
    features = checks.features(fn, mdp, features)
    init = torch.as_tensor(init, dtype=features.dtype, device=features.device)
    if init.ndim > 1 or (init.ndim == 1 and init.shape[0] != features.shape[1]):
        raise ValueError(f"{fn}: init must be a number or a vector of length {features.shape[1]}, got shape {tuple(init.shape)}")
    generator = check_generator(fn, "generator", generator)
    stream = sample_transitions(mdp, policy, episodes=episodes, runs=runs, generator=generator)
    return linear_prediction(stream, features, alpha=alpha, gamma=gamma, init=init, method=method, episodes=episodes)


def _table(mdp) -> torch.Tensor:
    """One-hot features with zero rows for terminal states (their value stays 0)."""
    return torch.eye(mdp.n_states, dtype=mdp.P.dtype, device=mdp.P.device) * (~mdp.terminal).to(mdp.P.dtype)[:, None]


def td0(mdp, policy, *, alpha, episodes, runs, generator: torch.Generator, gamma=1.0, init=0.0) -> torch.Tensor:
    """Tabular TD(0): ``V(S_t) += alpha (R_{t+1} + gamma V(S_{t+1}) - V(S_t))`` after every step.
    Returns the values after every episode of every run, (runs, episodes + 1, S)."""
    table = _table(checks.mdp("td0", mdp))
    w = _predict("td0", mdp, policy, table, alpha=alpha, episodes=episodes, runs=runs, gamma=gamma,
                 init=init, generator=generator, method="td")
    return w * (~mdp.terminal)


def mc_prediction(mdp, policy, *, alpha, episodes, runs, generator: torch.Generator, gamma=1.0,
                  init=0.0) -> torch.Tensor:
    """Constant-alpha every-visit Monte Carlo: ``V(S_t) += alpha (G_t - V(S_t))`` once the episode is
    over. Returns (runs, episodes + 1, S) like ``td0``."""
    table = _table(checks.mdp("mc_prediction", mdp))
    w = _predict("mc_prediction", mdp, policy, table, alpha=alpha, episodes=episodes, runs=runs, gamma=gamma,
                 init=init, generator=generator, method="mc")
    return w * (~mdp.terminal)


def semi_gradient_td(mdp, policy, features, *, alpha, episodes, runs, generator: torch.Generator, gamma=1.0, init=0.0):
    """Semi-gradient TD(0) with linear features (S x d): weights after every episode, (runs, episodes + 1, d)."""
    return _predict("semi_gradient_td", mdp, policy, features, alpha=alpha, episodes=episodes, runs=runs,
                    gamma=gamma, init=init, generator=generator, method="td")


def gradient_mc(mdp, policy, features, *, alpha, episodes, runs, generator: torch.Generator, gamma=1.0, init=0.0):
    """Gradient Monte Carlo with linear features: weights after every episode, (runs, episodes + 1, d)."""
    return _predict("gradient_mc", mdp, policy, features, alpha=alpha, episodes=episodes, runs=runs,
                    gamma=gamma, init=init, generator=generator, method="mc")


def _projection_terms(fn, mdp, policy, features, gamma):
    mdp = checks.mdp(fn, mdp)
    policy = checks.policy(fn, mdp, policy)
    gamma = checks.gamma(fn, gamma)
    Phi = checks.features(fn, mdp, features)
    mu = on_policy_distribution(mdp, policy)
    P_pi, r_pi = markov_reward_process(mdp, policy)
    return Phi, mu, P_pi, r_pi, gamma


def td_fixed_point(mdp, policy, features, gamma=1.0) -> torch.Tensor:
    """The weights semi-gradient TD converges to: the solution of ``A w = b`` with
    ``A = Phi^T D (I - gamma P_pi) Phi`` and ``b = Phi^T D r_pi``, ``D = diag(mu)``."""
    Phi, mu, P_pi, r_pi, gamma = _projection_terms("td_fixed_point", mdp, policy, features, gamma)
    D = torch.diag(mu)
    I = torch.eye(len(mu), dtype=Phi.dtype, device=Phi.device)
    A = Phi.T @ D @ (I - gamma * P_pi) @ Phi
    b = Phi.T @ D @ r_pi
    return torch.linalg.pinv(A) @ b  # pinv: overlapping tilings make Phi rank-deficient; v = Phi w stays unique


def mc_fixed_point(mdp, policy, features, gamma=1.0) -> torch.Tensor:
    """The weights gradient MC converges to: the minimiser of the value error
    ``sum_s mu(s) (v_pi(s) - Phi[s] . w)^2``, i.e. ``(Phi^T D Phi) w = Phi^T D v_pi``."""
    from .planning import bellman_solve

    Phi, mu, P_pi, r_pi, gamma = _projection_terms("mc_fixed_point", mdp, policy, features, gamma)
    v = bellman_solve(P_pi, r_pi, gamma, mdp.terminal)
    D = torch.diag(mu)
    return torch.linalg.pinv(Phi.T @ D @ Phi) @ (Phi.T @ D @ v)


def batch_fixed_points(stream: Transitions, n_states: int, terminal: torch.Tensor, episodes: int, init: float):
    """Where batch updating converges after each episode, for every run: ``(td, mc)``, each
    (runs, episodes + 1, S).

    Batch MC converges to the average return seen from each state; batch TD to the
    certainty-equivalence estimate, the exact values of the Markov reward process whose
    transitions and rewards are the observed frequencies (undiscounted). Unvisited states
    keep ``init``. The statistics of every (run, episode) are gathered in one scatter and
    accumulated over episodes with a cumulative sum; then one batched solve."""
    T, runs = stream.states.shape
    dev, dtype = stream.rewards.device, stream.rewards.dtype
    S, E = n_states, episodes
    episode = torch.cumsum(stream.ends.long(), 0) - stream.ends.long()  # index of each step's episode
    keep_step = stream.active & (episode < E)
    run = torch.arange(runs, device=dev).expand(T, runs)
    cell = ((run * E + episode.clamp_max(E - 1)) * S + stream.states)[keep_step]  # (run, episode, state)

    def per_episode(values, width=1, column=None):
        flat = torch.zeros(runs * E * S * width, dtype=dtype, device=dev)
        index = cell * width + (column[keep_step] if column is not None else 0)
        flat.index_add_(0, index, values[keep_step].to(dtype))
        return flat.view(runs, E, S, width).cumsum(1)  # totals over episodes 1..k

    visits = per_episode(torch.ones_like(stream.rewards))[..., 0]
    counts = per_episode(torch.ones_like(stream.rewards), S, stream.next_states)
    reward_sum = per_episode(stream.rewards)[..., 0]
    return_sum = per_episode(returns(stream, 1.0))[..., 0]
    seen = (visits > 0) & ~terminal
    n = visits.clamp_min(1)
    unseen_value = torch.where(terminal, 0.0, init).to(dtype)
    eye = torch.eye(S, dtype=dtype, device=dev)
    # Certainty equivalence: v = r_hat + P_hat v on seen states; terminals 0, unseen keep init.
    A = torch.where(seen[..., None], eye - counts / n[..., None], eye)
    b = torch.where(seen, reward_sum / n, unseen_value)
    first = unseen_value.expand(runs, 1, S)
    td = torch.cat([first, torch.linalg.solve(A, b[..., None])[..., 0]], 1)
    mc = torch.cat([first, torch.where(seen, return_sum / n, unseen_value)], 1)
    return td, mc
