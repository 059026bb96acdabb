"""The chapter's experiment: learn to retrieve with one attention head, scaled or not."""

from __future__ import annotations

import math

import torch

from .._checks import choice, positive, real_number, whole_number
from .._threads import threads
from ..book import progress

OPTIMIZERS = ("sgd", "adam")


@threads(1)  # tiny matrices: a second thread costs more than it saves, and stalls on a busy CPU
def train_retrieval(
    d: int,
    scale: float,
    *,
    optimizer: str = "sgd",
    lr: float = 0.5,
    steps: int = 300,
    n_keys: int = 16,
    d_value: int = 8,
    noise: float = 0.5,
    batch: int = 128,
    seed: int,
) -> list[float]:
    """Train query/key projections to fetch the value whose key the query resembles.

    Each example has ``n_keys`` random keys and values; the query is a noisy copy
    of one key, and the loss is the squared error between the attention output
    ``sum_j p_j v_j`` and that key's value. The loss reaches the values only
    through softmax, so a saturated softmax starves the projections of gradient.
    Returns the loss at every step. ``seed`` fixes the initial projections and every batch.
    """
    fn = "train_retrieval"
    d, steps, batch = whole_number(fn, "d", d), whole_number(fn, "steps", steps), whole_number(fn, "batch", batch)
    n_keys, d_value = whole_number(fn, "n_keys", n_keys), whole_number(fn, "d_value", d_value)
    scale = real_number(fn, "scale", scale)
    choice(fn, "optimizer", optimizer, OPTIMIZERS)
    lr = positive(fn, "lr", lr)
    noise = real_number(fn, "noise", noise, low=0.0)
    g = torch.Generator().manual_seed(whole_number(fn, "seed", seed, minimum=0))
    w_q = (torch.randn(d, d, generator=g) / math.sqrt(d)).requires_grad_()
    w_k = (torch.randn(d, d, generator=g) / math.sqrt(d)).requires_grad_()
    make = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    opt = make([w_q, w_k], lr=lr)
    rows = torch.arange(batch)
    losses = []
    for _ in progress(range(steps), desc=f"d={d}, scale={scale:.3g}, {optimizer}", leave=False):
        keys = torch.randn(batch, n_keys, d, generator=g)
        values = torch.randn(batch, n_keys, d_value, generator=g)
        target = torch.randint(0, n_keys, (batch,), generator=g)
        query = keys[rows, target] + noise * torch.randn(batch, d, generator=g)
        logits = scale * torch.einsum("bd,bnd->bn", query @ w_q, keys @ w_k)
        out = torch.einsum("bn,bnv->bv", torch.softmax(logits, dim=-1), values)
        loss = (out - values[rows, target]).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
