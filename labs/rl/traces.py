"""Multi-step prediction: n-step TD and TD(lambda) with eligibility traces, many runs at once.

n-step TD updates ``S_tau`` with the n-step return

    G_{tau:tau+n} = R_{tau+1} + gamma R_{tau+2} + ... + gamma^{n-1} R_{tau+n} + gamma^n v(S_{tau+n}),

truncated (no bootstrap) when the episode ends first. The textbook makes the
update of ``S_tau`` at time ``tau + n - 1`` and, when an episode ends, flushes
its last ``n - 1`` updates at once. Here every run makes exactly one update per
step, the one for ``tau = t - n + 1``: the flush is spread over the next
episode's first ``n - 1`` steps, in which the textbook makes no update, and
since a flushed target never bootstraps, the sequence of weights is the same.
That keeps all runs in one tensor operation per step.

TD(lambda) (backward view) keeps a trace ``z <- gamma lambda z + phi(S_t)`` and
moves ``w += alpha delta_t z``; offline (``w`` held fixed over an episode) its
summed update equals that of the lambda-return ``G^lambda_t`` (forward view).
"""

from __future__ import annotations

import torch

from . import checks
from .._checks import real_number, whole_number
from .._threads import threads
from .prediction import Transitions, returns


def _stream_and_features(fn, stream, features):
    if not isinstance(stream, Transitions):
        raise TypeError(f"{fn}: stream must be a Transitions from sample_transitions, got {type(stream).__name__}")
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        raise ValueError(f"{fn}: features must be a tensor of shape (S, d), got {getattr(features, 'shape', type(features).__name__)}")
    return features.to(stream.rewards.dtype)


def _alphas(fn, alpha, dtype):
    """Step sizes as a 1-D tensor (one learner per step size), each > 0."""
    alpha = torch.as_tensor(alpha, dtype=dtype).reshape(-1)
    for a in alpha.tolist():
        real_number(fn, "alpha (the step size)", a, low=0.0, low_open=True)
    return alpha


def episode_end_index(stream: Transitions) -> torch.Tensor:
    """For every step ``t``, the step at which its episode ends (its last transition), (T, runs);
    ``T`` if the stream stops before the episode ends."""
    T = stream.states.shape[0]
    time = torch.arange(T, device=stream.states.device)[:, None].expand_as(stream.states)
    marked = torch.where(stream.ends | ~stream.active, time, torch.full_like(time, T))
    return marked.flip(0).cummin(0).values.flip(0)


@threads(1)
def n_step_td(stream, features, *, n: int, alpha, gamma: float = 1.0, init=0.0, episodes: int) -> torch.Tensor:
    """n-step semi-gradient TD with linear features, for every step size in ``alpha`` at once on
    the same experience: weights at the end of every episode (after its last update),
    (len(alpha), runs, episodes + 1, d)."""
    fn = "n_step_td"
    features = _stream_and_features(fn, stream, features)
    n, episodes = whole_number(fn, "n", n), whole_number(fn, "episodes", episodes)
    gamma = checks.gamma(fn, gamma)
    alpha = _alphas(fn, alpha, features.dtype)
    T, runs = stream.states.shape
    d, K = features.shape[1], alpha.shape[0]
    G = returns(stream, gamma)
    end = episode_end_index(stream)
    time = torch.arange(T)[:, None]
    boot = (end - time) >= n  # the episode is still going at tau + n: bootstrap from S_{tau+n}
    later = (time + n).clamp_max(T - 1).expand(T, runs)
    G_later = G.gather(0, later)
    truncated = torch.where(boot, G - gamma**n * G_later, G)  # R_{tau+1} + ... up to n rewards
    boot_state = stream.states.gather(0, later)  # S_{tau+n}, used only where boot
    w = torch.as_tensor(init, dtype=features.dtype).expand(K, runs, d).clone()
    history = torch.empty(K, runs, episodes + 2, d, dtype=w.dtype)
    history[:, :, 0] = w
    finished = torch.zeros(runs, dtype=torch.long)
    ar = torch.arange(runs)
    for t in range(T + n - 1):
        tau = t - n + 1
        if tau < 0:
            continue
        phi = features[stream.states[tau]]  # (runs, d)
        target = truncated[tau] + gamma**n * boot[tau] * (features[boot_state[tau]] * w).sum(-1)
        error = (target - (phi * w).sum(-1)) * stream.active[tau]
        w += alpha[:, None, None] * error[..., None] * phi
        ends = stream.ends[tau]
        slot = torch.where(ends, finished + 1, torch.full_like(finished, episodes + 1)).clamp_max(episodes + 1)
        history[:, ar, slot] = w
        finished += ends
    return history[:, :, : episodes + 1]


@threads(1)
def td_lambda(stream, features, *, lam: float, alpha, gamma: float = 1.0, init=0.0, episodes: int) -> torch.Tensor:
    """Online semi-gradient TD(lambda) with accumulating traces (backward view), for every step
    size in ``alpha`` at once: weights at the end of every episode, (len(alpha), runs, episodes + 1, d)."""
    fn = "td_lambda"
    features = _stream_and_features(fn, stream, features)
    lam = real_number(fn, "lam (lambda)", lam, low=0.0, high=1.0)
    gamma = checks.gamma(fn, gamma)
    episodes = whole_number(fn, "episodes", episodes)
    alpha = _alphas(fn, alpha, features.dtype)
    T, runs = stream.states.shape
    d, K = features.shape[1], alpha.shape[0]
    w = torch.as_tensor(init, dtype=features.dtype).expand(K, runs, d).clone()
    z = torch.zeros(K, runs, d, dtype=w.dtype)
    history = torch.empty(K, runs, episodes + 2, d, dtype=w.dtype)
    history[:, :, 0] = w
    finished = torch.zeros(runs, dtype=torch.long)
    ar = torch.arange(runs)
    for t in range(T):
        phi = features[stream.states[t]]
        active = stream.active[t]
        z = gamma * lam * z + phi * active[:, None]
        delta = (stream.rewards[t] + gamma * (features[stream.next_states[t]] * w).sum(-1) - (phi * w).sum(-1)) * active
        w += alpha[:, None, None] * delta[..., None] * z
        ends = stream.ends[t]
        z = torch.where((ends | ~active)[:, None], torch.zeros_like(z), z)
        slot = torch.where(ends, finished + 1, torch.full_like(finished, episodes + 1)).clamp_max(episodes + 1)
        history[:, ar, slot] = w
        finished += ends
    return history[:, :, : episodes + 1]


def lambda_returns(rewards: torch.Tensor, values: torch.Tensor, *, gamma: float, lam: float) -> torch.Tensor:
    """The lambda-returns of one episode: ``rewards`` R_1..R_T and ``values`` v(S_0)..v(S_{T-1})
    (the terminal state's value is 0). ``G^lambda_t = R_{t+1} + gamma ((1 - lambda) v(S_{t+1}) +
    lambda G^lambda_{t+1})``, computed backwards."""
    fn = "lambda_returns"
    if not (isinstance(rewards, torch.Tensor) and isinstance(values, torch.Tensor)) or rewards.shape != values.shape or rewards.ndim != 1:
        raise ValueError(f"{fn}: rewards and values must be 1-D tensors of the same length, got "
                         f"{getattr(rewards, 'shape', type(rewards).__name__)} and {getattr(values, 'shape', type(values).__name__)}")
    gamma = real_number(fn, "gamma (the discount)", gamma, low=0.0, high=1.0)
    lam = real_number(fn, "lam (lambda)", lam, low=0.0, high=1.0)
    G = torch.zeros_like(rewards)
    following, next_value = 0.0, 0.0
    for t in range(len(rewards) - 1, -1, -1):
        following = rewards[t] + gamma * ((1 - lam) * next_value + lam * following)
        G[t] = following
        next_value = values[t]
    return G
