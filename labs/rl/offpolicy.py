"""Off-policy prediction with linear features: the deadly triad and a gradient-TD fix.

Baird's counterexample (Sutton and Barto, Example 11.1): seven states, a
"dashed" action that jumps to one of states 1-6 uniformly and a "solid" action
that jumps to state 7; every reward is 0. The behaviour policy takes dashed
with probability 6/7, the target policy always takes solid. With the features
below the true values (all 0) are representable, yet off-policy semi-gradient
TD diverges. TDC (Sutton et al. 2009) follows the gradient of the projected
Bellman error with a second set of weights and converges.
"""

from __future__ import annotations

import torch

from . import checks
from .._checks import choice, real_number, whole_number
from .._checks import generator as check_generator
from .._threads import threads
from .mdp import TabularMDP, sample_actions

BAIRD_ACTIONS = ("dashed", "solid")


def baird() -> tuple[TabularMDP, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Baird's counterexample: ``(mdp, features (7 x 8), behaviour, target)``, the policies (7 x 2)."""
    S = 7
    P = torch.zeros(S, 2, S, dtype=torch.float64)
    P[:, 0, :6] = 1 / 6
    P[:, 1, 6] = 1.0
    R = torch.zeros_like(P)
    start = torch.full((S,), 1 / S, dtype=torch.float64)
    mdp = TabularMDP(P, R, torch.zeros(S, dtype=torch.bool), start, BAIRD_ACTIONS, name="Baird's counterexample")
    phi = torch.zeros(S, 8, dtype=torch.float64)
    phi[torch.arange(6), torch.arange(6)] = 2.0
    phi[:6, 7] = 1.0
    phi[6, 6], phi[6, 7] = 1.0, 2.0
    behaviour = torch.tensor([[6 / 7, 1 / 7]] * S, dtype=torch.float64)
    target = torch.tensor([[0.0, 1.0]] * S, dtype=torch.float64)
    return mdp, phi, behaviour, target


@threads(1)
def off_policy_td(mdp, behaviour, target, features, *, method: str, alpha: float, steps: int, runs: int,
                  generator: torch.Generator, gamma: float, init, beta: float = 0.0, record_every: int = 1) -> torch.Tensor:
    """Off-policy linear prediction of ``target``'s values from ``behaviour``'s experience, with
    per-step importance sampling ratios ``rho = target(a|s) / behaviour(a|s)``, in ``runs`` runs at once:

    * ``"td"``:  semi-gradient TD(0), ``w += alpha rho delta phi``;
    * ``"tdc"``: TDC, ``w += alpha rho (delta phi - gamma phi' (phi . v))``, ``v += beta (rho delta - phi . v) phi``.

    Returns ``w`` every ``record_every`` steps, (steps // record_every + 1, runs, d)."""
    fn = "off_policy_td"
    mdp = checks.mdp(fn, mdp)
    behaviour, target = checks.policy(fn, mdp, behaviour), checks.policy(fn, mdp, target)
    features = checks.features(fn, mdp, features)
    choice(fn, "method", method, ("td", "tdc"))
    alpha, gamma = checks.alpha(fn, alpha), checks.gamma(fn, gamma)
    beta = real_number(fn, "beta", beta, low=0.0)
    if method == "tdc" and beta == 0.0:
        raise ValueError(f"{fn}: TDC needs a step size beta > 0 for its second weights, got {beta}")
    steps, runs = whole_number(fn, "steps", steps), whole_number(fn, "runs", runs)
    record_every = whole_number(fn, "record_every", record_every)
    generator = check_generator(fn, "generator", generator)
    if (target[behaviour == 0] > 0).any():
        raise ValueError(f"{fn}: the behaviour policy must try every action the target policy takes (coverage)")
    d = features.shape[1]
    w = torch.as_tensor(init, dtype=features.dtype).expand(runs, d).clone()
    v = torch.zeros(runs, d, dtype=features.dtype)
    ratio = torch.where(behaviour > 0, target / behaviour.clamp_min(1e-300), torch.zeros_like(target))
    history = [w.clone()]
    state = mdp.reset(runs, generator)
    for step in range(steps):
        action = sample_actions(behaviour, state, generator)
        next_state, reward = mdp.step(state, action, generator)
        rho = ratio[state, action]
        phi, phi_next = features[state], features[next_state]
        delta = reward + gamma * (phi_next * w).sum(-1) - (phi * w).sum(-1)
        if method == "td":
            w += alpha * (rho * delta)[:, None] * phi
        else:
            correction = (phi * v).sum(-1)
            w += alpha * rho[:, None] * (delta[:, None] * phi - gamma * phi_next * correction[:, None])
            v += beta * (rho * delta - correction)[:, None] * phi
        state = next_state
        if (step + 1) % record_every == 0:
            history.append(w.clone())
    return torch.stack(history)
