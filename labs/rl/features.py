"""Linear features for a chain of states between two terminal ends (the random walks).

Each builder returns a feature matrix ``Phi`` of shape ``(n_states + 2, d)``:
row ``s`` is the feature vector of state ``s`` for ``s = 1..n_states``, and the
two terminal rows (0 and n_states + 1) are zero so that every linear value
estimate ``v(s) = Phi[s] . w`` is 0 at the ends.
"""

from __future__ import annotations

import math

import torch

from .._checks import whole_number


def _check(fn, n_states, **counts):
    for name, value in {"n_states": n_states, **counts}.items():
        whole_number(fn, name, value)


def _chain(features: torch.Tensor) -> torch.Tensor:
    """Put zero rows for the terminal ends around the features of states 1..n."""
    zero = torch.zeros(1, features.shape[1], dtype=torch.float64)
    return torch.cat([zero, features.double(), zero])


def _positions(n_states: int) -> torch.Tensor:
    """States 1..n scaled to [0, 1]."""
    return torch.arange(n_states, dtype=torch.float64) / max(n_states - 1, 1)


def tabular(n_states: int) -> torch.Tensor:
    """One-hot features: the table as a special case of a linear function."""
    _check("tabular", n_states)
    return _chain(torch.eye(n_states, dtype=torch.float64))


def state_aggregation(n_states: int, groups: int) -> torch.Tensor:
    """One indicator per group of ``n_states // groups`` neighbouring states (Sutton & Barto 9.3)."""
    _check("state_aggregation", n_states, groups=groups)
    if n_states % groups:
        raise ValueError(f"state_aggregation: groups={groups} must divide n_states={n_states}")
    group = torch.arange(n_states) // (n_states // groups)
    return _chain(torch.nn.functional.one_hot(group, groups))


def polynomial(n_states: int, order: int) -> torch.Tensor:
    """Powers ``x^0..x^order`` of the state position ``x`` in [0, 1]."""
    _check("polynomial", n_states, order=order)
    x = _positions(n_states)
    return _chain(torch.stack([x**k for k in range(order + 1)], -1))


def fourier(n_states: int, order: int) -> torch.Tensor:
    """Cosines ``cos(pi k x)`` for ``k = 0..order`` of the state position ``x`` in [0, 1]."""
    _check("fourier", n_states, order=order)
    x = _positions(n_states)
    return _chain(torch.stack([torch.cos(math.pi * k * x) for k in range(order + 1)], -1))


def tile_coding(n_states: int, tilings: int, tile_width: int) -> torch.Tensor:
    """``tilings`` overlapping partitions into tiles of ``tile_width`` states, each shifted by
    ``tile_width / tilings`` states; one binary feature per tile (Sutton & Barto 9.5.4)."""
    _check("tile_coding", n_states, tilings=tilings, tile_width=tile_width)
    s = torch.arange(n_states)
    tiles_per_tiling = (n_states - 1 + (tilings - 1) * tile_width // tilings) // tile_width + 1
    columns = []
    for t in range(tilings):
        offset = (t * tile_width) // tilings
        columns.append(torch.nn.functional.one_hot((s + offset) // tile_width, tiles_per_tiling))
    tiles = torch.cat(columns, -1)
    return _chain(tiles[:, tiles.sum(0) > 0])  # the unshifted tiling needs one tile fewer
