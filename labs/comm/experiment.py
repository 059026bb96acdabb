"""What the chapter runs on every rank. These functions live in a module so that
``spawn``'s new processes can import them (a notebook's functions cannot be)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from .._checks import choice
from ..bench import median_ms
from . import ring_all_gather, ring_allreduce, ring_reduce_scatter
from .algorithms import chunk_bounds


def rank_tensor(rank: int, n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """The test vector of ``rank``: every rank can rebuild every other rank's input."""
    g = torch.Generator().manual_seed(seed * 1000 + rank)
    return torch.randn(n, generator=g, dtype=torch.float64).to(dtype)


def check_against_backend(n: int, seed: int = 0) -> dict:
    """Ring allreduce / reduce-scatter / all-gather against ``dist.all_reduce`` and the exact sum."""
    rank, p = dist.get_rank(), dist.get_world_size()
    x = rank_tensor(rank, n, seed)
    exact = sum(rank_tensor(r, n, seed) for r in range(p))
    ours = ring_allreduce(x.clone())
    theirs = x.clone()
    dist.all_reduce(theirs)
    start, stop = chunk_bounds(n, p)[rank]
    mine = ring_reduce_scatter(x.clone())
    gathered = torch.zeros(n, dtype=torch.float64)
    gathered[start:stop] = exact[start:stop]
    ring_all_gather(gathered)
    return {
        "ring_vs_exact": (ours - exact).abs().max().item(),
        "backend_vs_exact": (theirs - exact).abs().max().item(),
        "reduce_scatter_vs_exact": (mine - exact[start:stop]).abs().max().item() if stop > start else 0.0,
        "all_gather_equal": bool(torch.equal(gathered, exact)),
    }


def _repeat_seconds(op, buffer, iters: int) -> float:
    """One repeat: the ranks start together, then the median of ``iters`` back-to-back calls."""
    dist.barrier()
    return median_ms(lambda: op(buffer), warmup=0, repeats=iters, device=buffer.device) / 1e3


def time_allreduce(sizes: list[int], repeats: int = 5, iters: int = 3, device: str = "cpu") -> list[dict]:
    """Seconds per allreduce of float32 vectors, our ring against the backend, for each size.

    Each repeat starts after a barrier and takes the median of ``iters``
    back-to-back calls; a repeat's time is the slowest rank's. Reports the
    median over repeats (``*_s``) and the fastest repeat (``*_min_s``: on a
    shared machine, noise only adds time).
    """
    p = dist.get_world_size()
    where = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device("cpu")
    ops = {"ring": lambda t: ring_allreduce(t, check=False), "backend": dist.all_reduce}
    rows = []
    for n in sizes:
        buffer = torch.zeros(n, dtype=torch.float32, device=where)
        for op in ops.values():  # warm up connections and allocators
            op(buffer)
        times = {name: [] for name in ops}
        for _ in range(repeats):
            for name, op in ops.items():
                times[name].append(_repeat_seconds(op, buffer, iters))
        slowest = torch.tensor([times[name] for name in ops], dtype=torch.float64, device=where)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        medians, fastest = slowest.cpu().median(dim=1).values.tolist(), slowest.cpu().min(dim=1).values.tolist()
        rows.append({"p": p, "n_elements": n, "n_bytes": 4 * n}
                    | {f"{name}_s": m for name, m in zip(ops, medians)}
                    | {f"{name}_min_s": m for name, m in zip(ops, fastest)})
    return rows


# Data-parallel training: p ranks on p shards of one batch against one process on the whole batch.


def _linear(n_in: int, n_out: int, generator: torch.Generator) -> torch.nn.Linear:
    """A float64 ``nn.Linear`` initialised as PyTorch does, U(-1/sqrt(n_in), 1/sqrt(n_in)), from ``generator``."""
    layer = torch.nn.utils.skip_init(torch.nn.Linear, n_in, n_out, dtype=torch.float64)  # no draw from the global RNG
    bound = n_in ** -0.5
    with torch.no_grad():
        for param in layer.parameters():
            param.uniform_(-bound, bound, generator=generator)
    return layer


def make_problem(seed: int = 0, batch: int = 48, features: int = 10, hidden: int = 16, classes: int = 3):
    """A small MLP and one fixed classification batch, in float64, built from ``seed`` alone."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, features, generator=g, dtype=torch.float64)
    y = (x[:, :classes] + 0.3 * torch.randn(batch, classes, generator=g, dtype=torch.float64)).argmax(1)
    model = torch.nn.Sequential(_linear(features, hidden, g), torch.nn.Tanh(), _linear(hidden, classes, g))
    return model, x, y


def _sgd_step(model, x, y, lr: float, average) -> float:
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    average(model)
    with torch.no_grad():
        for param in model.parameters():
            param -= lr * param.grad
    return loss.item()


def train_single_process(steps: int = 20, lr: float = 0.5, seed: int = 0) -> tuple[list[torch.Tensor], list[float]]:
    """Plain SGD on the whole batch: the parameters and losses data-parallel training must reproduce."""
    model, x, y = make_problem(seed)
    losses = [_sgd_step(model, x, y, lr, lambda m: None) for _ in range(steps)]
    return [p.detach().clone() for p in model.parameters()], losses


def average_gradients(model) -> None:
    """Ring-allreduce every gradient and divide by p: the mean of the shards' mean-loss gradients."""
    p = dist.get_world_size()
    for param in model.parameters():
        ring_allreduce(param.grad)
        param.grad /= p


def train_data_parallel(steps: int = 20, lr: float = 0.5, seed: int = 0) -> tuple[list[torch.Tensor], list[float]]:
    """Each rank trains a replica on its equal shard of the batch, averaging gradients every step."""
    rank, p = dist.get_rank(), dist.get_world_size()
    model, x, y = make_problem(seed)
    if x.shape[0] % p:
        raise ValueError(f"train_data_parallel: the batch of {x.shape[0]} must split evenly over {p} ranks")
    shard = slice(rank * x.shape[0] // p, (rank + 1) * x.shape[0] // p)
    losses = [_sgd_step(model, x[shard], y[shard], lr, average_gradients) for _ in range(steps)]
    return [q.detach().clone() for q in model.parameters()], losses


def chapter_run(sizes: list[int], repeats: int, iters: int, check_n: int, train_steps: int, seed: int = 0) -> dict:
    """Everything the chapter needs from one set of p processes (start-up is the expensive part)."""
    return {
        "check": check_against_backend(check_n, seed),
        "timings": time_allreduce(sizes, repeats=repeats, iters=iters),
        "training": train_data_parallel(train_steps, seed=seed),
    }


RING_TERMS = ("alpha", "beta")
"""The terms of the ring model ``2(p-1) alpha + 2(p-1)/p n beta`` that ``fit_alpha_beta`` can fit."""


def fit_alpha_beta(p: np.ndarray, n_bytes: np.ndarray, seconds: np.ndarray, *,
                   terms: tuple[str, ...] = RING_TERMS) -> tuple[float, float]:
    """Least-squares alpha and beta of the ring model ``2(p-1) alpha + 2(p-1)/p n beta``.

    Each equation is divided by its measured time, so the fit minimises
    relative error and small messages count as much as large ones. ``terms``
    picks the terms to fit (``("alpha",)``: latency alone; the other is 0).
    Both are kept >= 0: when the two-term fit makes one negative (noisy
    data), the better one-term fit is returned instead.
    """
    terms = tuple(choice("fit_alpha_beta", "terms", t, RING_TERMS) for t in terms)
    if not terms:
        raise ValueError("fit_alpha_beta: terms must name at least one of 'alpha', 'beta', got ()")
    p, n_bytes, seconds = (np.asarray(a, dtype=np.float64) for a in (p, n_bytes, seconds))
    columns = {"alpha": 2 * (p - 1), "beta": 2 * (p - 1) / p * n_bytes}
    design = np.stack([columns[t] for t in terms], axis=1) / seconds[:, None]
    target = np.ones_like(seconds)
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    if (solution < 0).any():  # noisy data: keep alpha, beta >= 0 by fitting one term alone
        fits = [fit_alpha_beta(p, n_bytes, seconds, terms=(t,)) for t in terms]
        errors = [np.sum((np.stack([columns["alpha"], columns["beta"]], 1) @ np.array(f) / seconds - 1) ** 2)
                  for f in fits]
        return fits[int(np.argmin(errors))]
    fitted = dict(zip(terms, solution))
    return float(fitted.get("alpha", 0.0)), float(fitted.get("beta", 0.0))


# Ranks that misbehave on purpose, for the tests and the chapter's failure demo.


def fail_on_rank(bad_rank: int) -> int:
    """Rank ``bad_rank`` raises; the others wait in an allreduce that can never finish."""
    if dist.get_rank() == bad_rank:
        raise ValueError(f"rank {bad_rank} fails on purpose")
    ring_allreduce(torch.ones(8))
    return dist.get_rank()


def mismatched_shapes() -> int:
    """Rank r passes a vector of length 4 + r: every rank gets the shape error."""
    ring_allreduce(torch.ones(4 + dist.get_rank()))
    return dist.get_rank()
