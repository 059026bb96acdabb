"""A small deep Q-network (Mnih et al. 2015) on a grid world: the two ideas that make it work.

* A replay buffer: transitions from a behaviour policy are stored and
  mini-batches are drawn from it at random, breaking the correlation of
  consecutive steps.
* A target network: the bootstrapped target ``R + gamma max_a Q_target(S', a)``
  uses a copy of the network that is refreshed only every ``target_every``
  steps, so the regression target does not move with every gradient step.

The input is the cell's (row, col) scaled to [0, 1]: the network must
generalise across cells, unlike a table.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn

from . import checks
from .._checks import flag, positive, whole_number
from .._seed import global_rng_from
from .._threads import threads
from .mdp import sample_actions
from .planning import uniform_policy


class DQNResult(NamedTuple):
    """``q`` (S, A): the trained network's action values at every cell; ``losses`` per update."""

    q: torch.Tensor
    losses: torch.Tensor


def cell_inputs(mdp) -> torch.Tensor:
    """(S, 2): each state's (row, col), scaled to [0, 1]."""
    if mdp.shape is None:
        raise ValueError(f"cell_inputs: {mdp.name!r} is not a grid world (no shape)")
    rows, cols = mdp.shape
    s = torch.arange(mdp.n_states)
    return torch.stack([s // cols / max(rows - 1, 1), s % cols / max(cols - 1, 1)], -1).float()


class ReplayBuffer:
    """A fixed-size ring of transitions (s, a, r, s'), sampled uniformly."""

    def __init__(self, capacity: int):
        self.capacity = whole_number("ReplayBuffer", "capacity", capacity)
        self.data: tuple[torch.Tensor, ...] | None = None
        self.size = self.next = 0

    def add(self, states, actions, rewards, next_states) -> None:
        batch = (states, actions, rewards, next_states)
        if self.data is None:
            self.data = tuple(torch.zeros(self.capacity, dtype=x.dtype) for x in batch)
        n = states.shape[0]
        index = (self.next + torch.arange(n)) % self.capacity
        for store, x in zip(self.data, batch):
            store[index] = x
        self.next = (self.next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, generator: torch.Generator):
        index = torch.randint(0, self.size, (n,), generator=generator)
        return tuple(store[index] for store in self.data)


@threads(1)
def dqn(mdp, *, gamma: float, steps: int = 3000, envs: int = 16, batch: int = 128, hidden: int = 64,
        lr: float = 3e-3, target_every: int = 100, capacity: int = 20_000, replay: bool = True, seed: int) -> DQNResult:
    """Train a Q-network on a grid world from a uniformly random behaviour policy run in ``envs``
    parallel copies (off-policy, so it learns the optimal ``q``). One environment step of all
    copies and one gradient step per iteration. ``seed`` draws the network's initial weights,
    the behaviour and the replay samples; torch's global RNG is left as it was.

    Ablations: ``target_every=1`` bootstraps from the network being trained (no target
    network); ``replay=False`` learns from the ``envs`` transitions of the latest step only."""
    fn = "dqn"
    mdp = checks.mdp(fn, mdp)
    gamma = checks.gamma(fn, gamma)
    if gamma >= 1.0:
        raise ValueError(f"{fn}: the grid world is continuing, so gamma must be < 1, got {gamma}")
    steps, envs, batch, hidden, target_every = (
        whole_number(fn, name, v)
        for name, v in [("steps", steps), ("envs", envs), ("batch", batch), ("hidden", hidden), ("target_every", target_every)]
    )
    positive(fn, "lr", lr)
    replay = flag(fn, "replay", replay)
    seed = whole_number(fn, "seed", seed, minimum=0)
    torch_generator = torch.Generator().manual_seed(seed)
    inputs = cell_inputs(mdp)
    cpu_mdp = mdp.to("cpu")
    behaviour = uniform_policy(cpu_mdp)
    with global_rng_from(torch.Generator().manual_seed(seed)):  # the initial weights come from seed alone
        net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, mdp.n_actions))
    target_net = _copy(net)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    buffer = ReplayBuffer(capacity)
    state = cpu_mdp.reset(envs, torch_generator)
    losses = []
    for step in range(steps):
        action = sample_actions(behaviour, state, torch_generator)
        next_state, reward = cpu_mdp.step(state, action, torch_generator)
        state_before = state
        buffer.add(state, action, reward.float(), next_state)
        state = next_state
        s, a, r, s2 = buffer.sample(batch, torch_generator) if replay else (state_before, action, reward.float(), next_state)
        with torch.no_grad():
            target = r + gamma * target_net(inputs[s2]).amax(-1)
        prediction = net(inputs[s]).gather(-1, a[:, None]).squeeze(-1)
        loss = nn.functional.mse_loss(prediction, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if (step + 1) % target_every == 0:
            target_net.load_state_dict(net.state_dict())
    with torch.no_grad():
        q = net(inputs).double()
    return DQNResult(q, torch.tensor(losses))


def _copy(net: nn.Module) -> nn.Module:
    """A frozen copy of ``net``: the target network."""
    clone = copy.deepcopy(net)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone
