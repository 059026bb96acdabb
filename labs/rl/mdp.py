"""A tabular Markov decision process held as tensors, and the book's example environments.

``P[s, a, s']`` is the probability of moving from ``s`` to ``s'`` under action
``a`` and ``R[s, a, s']`` the reward received on that transition, so the
expected reward is ``r[s, a] = sum_s' P[s, a, s'] R[s, a, s']``. Terminal
states are absorbing with reward 0. Sampling works on whole batches of
independent runs at once: ``states`` is a tensor with one entry per run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import real_number, whole_number

LEFT_RIGHT = ("left", "right")
COMPASS = ("up", "right", "down", "left")
COMPASS_STAY = ("up", "right", "down", "left", "stay")
_MOVES = {"up": (-1, 0), "right": (0, 1), "down": (1, 0), "left": (0, -1), "stay": (0, 0)}


@dataclass
class TabularMDP:
    """Transition probabilities ``P`` (S x A x S), transition rewards ``R`` (S x A x S),
    a boolean ``terminal`` mask (S,) and a ``start`` distribution (S,).

    ``shape`` (rows, cols) marks a grid world whose state ``s`` is cell
    ``divmod(s, cols)``; ``actions`` names the actions.
    """

    P: torch.Tensor
    R: torch.Tensor
    terminal: torch.Tensor
    start: torch.Tensor
    actions: tuple[str, ...] = ()
    shape: tuple[int, int] | None = None
    name: str = "mdp"
    forbidden: tuple = ()
    target: tuple | None = None

    def __post_init__(self):
        S = self.P.shape[0]
        if self.P.ndim != 3 or self.P.shape[2] != S or self.R.shape != self.P.shape:
            raise ValueError(
                f"TabularMDP: P and R must both have shape (S, A, S), got {tuple(self.P.shape)} and {tuple(self.R.shape)}"
            )
        if self.terminal.shape != (S,) or self.start.shape != (S,):
            raise ValueError(f"TabularMDP: terminal and start must have shape ({S},)")
        if (self.P < 0).any() or not torch.allclose(self.P.sum(-1), torch.ones_like(self.P[..., 0])):
            raise ValueError("TabularMDP: every P[s, a, :] must be a probability distribution")
        if not torch.allclose(self.start.sum(), torch.ones_like(self.start[0])):
            raise ValueError("TabularMDP: start must be a probability distribution")
        self.terminal = self.terminal.bool()
        # Inverse-CDF sampling tables. Row (s, a) holds the reachable next states and their
        # cumulative probabilities, padded with 1.0 to the widest row; shifting row i's values by
        # i makes one sorted array, so one searchsorted samples a whole batch without building a
        # (runs x S) tensor (a 1000-state walk reaches 101 states from each state, not 1002).
        width = int((self.P > 0).sum(-1).amax())
        probs, support = torch.sort(self.P, dim=-1, descending=True, stable=True)
        probs, support = probs[..., :width], support[..., :width]
        cdf = torch.where(probs > 0, probs.cumsum(-1), torch.ones_like(probs))
        last = (probs > 0).sum(-1, keepdim=True) - 1
        cdf.scatter_(-1, last, 1.0)  # no rounding gap at the top
        rows = torch.arange(cdf.shape[0] * cdf.shape[1], dtype=cdf.dtype, device=cdf.device)
        self._cdf = (cdf.reshape(-1, width) + rows[:, None]).reshape(-1).contiguous()
        self._support = support.reshape(-1).contiguous()
        self._start_cdf = self.start.cumsum(0)
        self._start_cdf[-1] = 1.0

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    @property
    def r(self) -> torch.Tensor:
        """Expected reward ``r[s, a]`` of taking ``a`` in ``s``."""
        return (self.P * self.R).sum(-1)

    def to(self, device) -> "TabularMDP":
        """The same MDP with its tensors on ``device``."""
        return TabularMDP(
            self.P.to(device), self.R.to(device), self.terminal.to(device), self.start.to(device),
            self.actions, self.shape, self.name, self.forbidden, self.target,
        )

    def _uniform(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=generator.device, dtype=self.P.dtype).to(self.P.device)

    def reset(self, runs: int, generator: torch.Generator) -> torch.Tensor:
        """One start state per run, drawn from ``start``."""
        u = self._uniform(runs, generator)
        return torch.searchsorted(self._start_cdf, u, right=True).clamp_max(self.n_states - 1)

    def step(self, states: torch.Tensor, actions: torch.Tensor, generator: torch.Generator):
        """Next states and rewards for a batch: ``(next_states, rewards)``, one per run."""
        row = states * self.n_actions + actions
        u = self._uniform(states.shape[0], generator)
        position = torch.searchsorted(self._cdf, row.to(self._cdf.dtype) + u, right=True).clamp_max(self._cdf.numel() - 1)
        next_states = self._support[position]
        return next_states, self.R[states, actions, next_states]


def sample_actions(policy: torch.Tensor, states: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One action per run from the rows ``policy[states]`` (each a distribution over actions)."""
    probs = policy[states]
    u = torch.rand(states.shape[0], generator=generator, device=generator.device, dtype=probs.dtype)
    cdf = probs.cumsum(-1)
    return (cdf <= u.to(probs.device)[:, None]).sum(-1).clamp_max(probs.shape[-1] - 1)


def _terminal_ends(n: int, left_reward: float, right_reward: float, moves: dict[int, dict[int, float]]) -> TabularMDP:
    """A chain of ``n`` states between terminal ends 0 and n+1, starting in the middle.

    ``moves[a][k]`` is the probability that action ``a`` moves ``k`` cells (negative: left);
    moves past an end land on it.
    """
    S = n + 2
    P = torch.zeros(S, len(moves), S, dtype=torch.float64)
    R = torch.zeros_like(P)
    inner = torch.arange(1, n + 1)
    for a, jumps in moves.items():
        for k, p in jumps.items():
            P.index_put_((inner, torch.full_like(inner, a), (inner + k).clamp(0, S - 1)), torch.tensor(p, dtype=P.dtype), accumulate=True)
    for end in (0, S - 1):
        P[end, :, end] = 1.0
    R[1:-1, :, 0] = left_reward
    R[1:-1, :, S - 1] = right_reward
    terminal = torch.zeros(S, dtype=torch.bool)
    terminal[[0, S - 1]] = True
    start = torch.zeros(S, dtype=torch.float64)
    start[(n + 1) // 2] = 1.0
    return TabularMDP(P, R, terminal, start, LEFT_RIGHT)


def random_walk(n_states: int = 5, *, left_reward: float = 0.0) -> TabularMDP:
    """Sutton & Barto's Example 6.2: ``n_states`` in a row, start in the middle, step left or
    right; reward +1 on leaving at the right end, ``left_reward`` at the left end."""
    n_states = whole_number("random_walk", "n_states", n_states)
    if n_states % 2 == 0:
        raise ValueError(f"random_walk: n_states must be odd (so that there is a middle state to start in), got {n_states}")
    left_reward = real_number("random_walk", "left_reward", left_reward)
    mdp = _terminal_ends(n_states, left_reward, 1.0, {0: {-1: 1.0}, 1: {+1: 1.0}})
    mdp.name = f"random walk, {n_states} states"
    return mdp


def random_walk_1000(n_states: int = 1000, max_jump: int = 100) -> TabularMDP:
    """Sutton & Barto's Example 9.1: states 1..1000, start at 500; each step jumps uniformly
    1..100 states left or right; reward -1 at the left end, +1 at the right end."""
    whole_number("random_walk_1000", "n_states", n_states, minimum=2)
    jumps = {k: 1.0 / max_jump for k in range(1, max_jump + 1)}
    mdp = _terminal_ends(n_states, -1.0, 1.0, {0: {-k: p for k, p in jumps.items()}, 1: jumps})
    mdp.start.zero_()
    mdp.start[n_states // 2] = 1.0  # state 500 of 1..1000
    mdp.__post_init__()
    mdp.name = f"{n_states}-state random walk"
    return mdp


def _grid(rows, cols, actions, transition, start_cells, name, terminal_cells=()) -> TabularMDP:
    """A grid world from ``transition(cell, action) -> (next_cell, reward)`` (deterministic)."""
    S = rows * cols
    P = torch.zeros(S, len(actions), S, dtype=torch.float64)
    R = torch.zeros_like(P)
    terminal = torch.zeros(S, dtype=torch.bool)
    for row, col in terminal_cells:
        terminal[row * cols + col] = True
    for s in range(S):
        for a, action in enumerate(actions):
            if terminal[s]:
                P[s, a, s] = 1.0
                continue
            (row, col), reward = transition(divmod(s, cols), action)
            P[s, a, row * cols + col] = 1.0
            R[s, a, row * cols + col] = reward
    start = torch.zeros(S, dtype=torch.float64)
    for row, col in start_cells:
        start[row * cols + col] = 1.0 / len(start_cells)
    return TabularMDP(P, R, terminal, start, tuple(actions), (rows, cols), name)


def _clip(row, col, rows, cols):
    return min(max(row, 0), rows - 1), min(max(col, 0), cols - 1)


def cliff_walking() -> TabularMDP:
    """Sutton & Barto's Example 6.6: a 4 x 12 grid, start bottom-left, goal bottom-right, reward
    -1 per step; stepping into the cliff between them costs -100 and sends the agent back to start."""
    rows, cols, start, goal = 4, 12, (3, 0), (3, 11)

    def transition(cell, action):
        row, col = _clip(cell[0] + _MOVES[action][0], cell[1] + _MOVES[action][1], rows, cols)
        if row == 3 and 0 < col < 11:
            return start, -100.0
        return (row, col), -1.0

    return _grid(rows, cols, COMPASS, transition, [start], "cliff walking", [goal])


WINDY_STRENGTH = (0, 0, 0, 1, 1, 1, 2, 2, 1, 0)


def windy_gridworld() -> TabularMDP:
    """Sutton & Barto's Example 6.5: a 7 x 10 grid whose columns push the agent up by the wind
    strength; start (3, 0), goal (3, 7), reward -1 per step."""
    rows, cols = 7, 10

    def transition(cell, action):
        dr, dc = _MOVES[action]
        return _clip(cell[0] + dr - WINDY_STRENGTH[cell[1]], cell[1] + dc, rows, cols), -1.0

    return _grid(rows, cols, COMPASS, transition, [(3, 0)], "windy gridworld", [(3, 7)])


ZHAO_FORBIDDEN = ((1, 1), (1, 2), (2, 2), (3, 1), (3, 3), (4, 1))
ZHAO_TARGET = (3, 2)


def grid_world(
    rows: int = 5,
    cols: int = 5,
    *,
    forbidden=ZHAO_FORBIDDEN,
    target=ZHAO_TARGET,
    r_boundary: float = -1.0,
    r_forbidden: float = -1.0,
    r_target: float = 1.0,
    r_other: float = 0.0,
) -> TabularMDP:
    """A continuing grid world in the style of Zhao's book: five actions (four moves and stay);
    bumping into the boundary keeps the agent in place with ``r_boundary``; entering a forbidden
    cell is allowed but earns ``r_forbidden``; entering or staying on the target earns
    ``r_target``. No terminal states: the task goes on forever, so use ``gamma < 1``."""
    forbidden = {tuple(cell) for cell in forbidden}
    target = tuple(target)
    for cell in forbidden | {target}:
        if not (0 <= cell[0] < rows and 0 <= cell[1] < cols):
            raise ValueError(f"grid_world: cell {cell} lies outside the {rows} x {cols} grid")

    def transition(cell, action):
        dr, dc = _MOVES[action]
        row, col = cell[0] + dr, cell[1] + dc
        if not (0 <= row < rows and 0 <= col < cols):
            return cell, r_boundary
        if (row, col) == target:
            return (row, col), r_target
        return (row, col), r_forbidden if (row, col) in forbidden else r_other

    cells = [(r, c) for r in range(rows) for c in range(cols)]
    mdp = _grid(rows, cols, COMPASS_STAY, transition, cells, f"{rows} x {cols} grid world")
    mdp.forbidden, mdp.target = tuple(sorted(forbidden)), target
    return mdp
