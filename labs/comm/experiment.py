"""What the chapter runs on every rank. These functions live in a module so that
``spawn``'s new processes can import them (a notebook's functions cannot be)."""

from __future__ import annotations

import statistics
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist

from .._checks import choice
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


def _repeat_seconds(op, buffer, iters: int) -> tuple[float, float]:
    """One repeat: the ranks start together, then ``iters`` back-to-back calls.

    Returns the median and the fastest call's wall-clock seconds on this rank.
    """
    dist.barrier()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        op(buffer)
        if buffer.is_cuda:
            torch.cuda.synchronize(buffer.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def time_allreduce(sizes: list[int], repeats: int = 5, iters: int = 3, device: str = "cpu") -> list[dict]:
    """Seconds per allreduce of float32 vectors, our ring against the backend, for each size.

    Each repeat starts after a barrier and times ``iters`` back-to-back calls;
    a repeat's time is the slowest rank's. For each size and ``name`` in
    (``ring``, ``backend``) the row holds the median over repeats of the
    calls' median (``name_s``), the fastest repeat (``name_min_s``), and per
    repeat, in order, the median call (``name_repeats_s``) and the fastest
    call (``name_fastest_s``); repeat i of the ring and of the backend ran
    back to back. On a machine shared with other jobs, interference only ever
    adds time: the fastest calls are the least disturbed.
    """
    p = dist.get_world_size()
    where = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else torch.device("cpu")
    ops = {"ring": lambda t: ring_allreduce(t, check=False), "backend": dist.all_reduce}
    rows = []
    for n in sizes:
        buffer = torch.zeros(n, dtype=torch.float32, device=where)
        for op in ops.values():  # warm up connections and allocators
            op(buffer)
        medians = {name: [] for name in ops}
        fastest = {name: [] for name in ops}
        for _ in range(repeats):
            for name, op in ops.items():
                median, best = _repeat_seconds(op, buffer, iters)
                medians[name].append(median)
                fastest[name].append(best)
        slowest = torch.tensor([medians[name] for name in ops] + [fastest[name] for name in ops],
                               dtype=torch.float64, device=where)  # on the buffer's device: NCCL reduces GPU tensors
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        slowest = slowest.cpu()
        row = {"p": p, "n_elements": n, "n_bytes": 4 * n}
        for i, name in enumerate(ops):
            row |= {f"{name}_s": slowest[i].median().item(), f"{name}_min_s": slowest[i].min().item(),
                    f"{name}_repeats_s": slowest[i].tolist(), f"{name}_fastest_s": slowest[len(ops) + i].tolist()}
        rows.append(row)
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


class GradientBuckets:
    """DDP's gradient buckets on our ring: each bucket is allreduced during backward, as soon as it is full.

    Parameters are taken in reverse order (backward produces the last layer's
    gradients first) and packed into buckets of at most ``bucket_bytes`` (a
    larger parameter gets a bucket of its own). A hook on every parameter
    fires when its gradient is complete; when a bucket's last gradient
    arrives, the bucket is flattened into one buffer, ring-allreduced,
    divided by p and copied back, while backward goes on with the earlier
    layers. ``log`` records, for every allreduce, how many parameters were
    still waiting for their gradient: more than 0 means the communication ran
    during backward.
    """

    def __init__(self, model: torch.nn.Module, bucket_bytes: int):
        params = [q for q in model.parameters() if q.requires_grad][::-1]
        self.buckets: list[list[torch.nn.Parameter]] = []
        size = 0
        for q in params:
            nbytes = q.numel() * q.element_size()
            if not self.buckets or size + nbytes > bucket_bytes:
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(q)
            size += nbytes
        self.bucket_of = {id(q): k for k, bucket in enumerate(self.buckets) for q in bucket}
        self.n_params = len(params)
        self.log: list[int] = []
        self._ready: list[set] = [set() for _ in self.buckets]
        self._seen = 0
        for q in params:
            q.register_post_accumulate_grad_hook(self._on_gradient)

    def _on_gradient(self, param) -> None:
        k = self.bucket_of[id(param)]
        self._ready[k].add(id(param))
        self._seen += 1
        if len(self._ready[k]) == len(self.buckets[k]):
            bucket = self.buckets[k]
            flat = torch.cat([q.grad.reshape(-1) for q in bucket])
            ring_allreduce(flat, check=False)
            flat /= dist.get_world_size()
            offset = 0
            for q in bucket:
                q.grad.copy_(flat[offset:offset + q.numel()].view_as(q.grad))
                offset += q.numel()
            self.log.append(self.n_params - self._seen)
            self._ready[k].clear()
        if self._seen == self.n_params:
            self._seen = 0


def train_data_parallel_bucketed(steps: int = 20, lr: float = 0.5, seed: int = 0,
                                 bucket_bytes: int = 600) -> tuple[list[torch.Tensor], list[float], dict]:
    """``train_data_parallel`` with the averaging done by ``GradientBuckets`` during backward.

    Also returns how many parameters and buckets there are and, for every
    allreduce of the run, how many gradients were still to come.
    """
    rank, p = dist.get_rank(), dist.get_world_size()
    model, x, y = make_problem(seed)
    shard = slice(rank * x.shape[0] // p, (rank + 1) * x.shape[0] // p)
    buckets = GradientBuckets(model, bucket_bytes)
    losses = [_sgd_step(model, x[shard], y[shard], lr, lambda m: None) for _ in range(steps)]
    stats = {"params": buckets.n_params, "buckets": len(buckets.buckets), "waiting": buckets.log}
    return [q.detach().clone() for q in model.parameters()], losses, stats


def train_sharded(steps: int = 20, lr: float = 0.5, seed: int = 0) -> tuple[list[torch.Tensor], list[float], dict]:
    """Data parallelism with sharded optimiser state, as ZeRO and FSDP do it, on our ring.

    Every step: ring reduce-scatter of the flattened gradient (rank r gets the
    sum of its chunk), SGD on that chunk of the flattened parameters only,
    then a ring all-gather of the parameters. Returns the parameters, the
    losses, and the number of elements this rank sent per step in each half.
    """
    rank, p = dist.get_rank(), dist.get_world_size()
    model, x, y = make_problem(seed)
    shard = slice(rank * x.shape[0] // p, (rank + 1) * x.shape[0] // p)
    params = list(model.parameters())
    flat = torch.cat([q.detach().reshape(-1) for q in params])
    start, stop = chunk_bounds(flat.numel(), p)[rank]
    chunk_sizes = [b - a for a, b in chunk_bounds(flat.numel(), p)]
    losses = []
    for _ in range(steps):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[shard]), y[shard])
        loss.backward()
        grad = torch.cat([q.grad.reshape(-1) for q in params])
        mine = ring_reduce_scatter(grad, check=False) / p
        flat[start:stop] -= lr * mine  # this rank updates only its chunk (and would keep only its optimiser state)
        ring_all_gather(flat, check=False)
        offset = 0
        with torch.no_grad():
            for q in params:
                q.copy_(flat[offset:offset + q.numel()].view_as(q))
                offset += q.numel()
        losses.append(loss.item())
    # In a ring, step s sends chunk (rank - s - 1) (reduce-scatter) or (rank - s) (all-gather).
    sent = {"reduce_scatter": sum(chunk_sizes[(rank - s - 1) % p] for s in range(p - 1)),
            "all_gather": sum(chunk_sizes[(rank - s) % p] for s in range(p - 1)), "elements": flat.numel()}
    return [q.detach().clone() for q in params], losses, sent


def chapter_run(sizes: list[int], repeats: int, iters: int, check_n: int, train_steps: int, seed: int = 0) -> dict:
    """Everything the chapter needs from one set of p processes (start-up is the expensive part)."""
    return {
        "check": check_against_backend(check_n, seed),
        "timings": time_allreduce(sizes, repeats=repeats, iters=iters),
        "training": train_data_parallel(train_steps, seed=seed),
        "bucketed": train_data_parallel_bucketed(train_steps, seed=seed),
        "sharded": train_sharded(train_steps, seed=seed),
    }


RING_TERMS = ("alpha", "beta")
"""The terms of the ring model ``2(p-1) alpha + 2(p-1)/p n beta`` that ``fit_alpha_beta`` can fit."""


class AlphaBetaFit(NamedTuple):
    """A least-squares fit of the ring model; ``alpha`` or ``beta`` is 0 only when left out of ``terms``."""

    alpha: float
    beta: float
    rms_rel_error: float
    """Root-mean-square relative error of the fitted model on the points it was fitted to."""


def _fit_arrays(fn: str, p, n_bytes, seconds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, value in (("p", p), ("n_bytes", n_bytes), ("seconds", seconds)):
        array = np.asarray(value, dtype=np.float64).reshape(-1) if np.ndim(value) <= 1 else None
        if array is None or not np.all(np.isfinite(array)):
            raise ValueError(f"{fn}: {name} must be a 1-D sequence of finite numbers, got {value!r}")
        arrays.append(array)
    p, n_bytes, seconds = arrays
    if not len(p) == len(n_bytes) == len(seconds):
        raise ValueError(f"{fn}: p, n_bytes and seconds must have the same length, got "
                         f"{len(p)}, {len(n_bytes)} and {len(seconds)}")
    if (p < 2).any() or (p != np.round(p)).any():
        raise ValueError(f"{fn}: every p must be an int >= 2 (one rank sends nothing), got {p.tolist()}")
    if (n_bytes < 0).any() or (seconds <= 0).any():
        raise ValueError(f"{fn}: n_bytes must be >= 0 and seconds > 0, got n_bytes={n_bytes.tolist()}, "
                         f"seconds={seconds.tolist()}")
    return p, n_bytes, seconds


def _fit_terms(fn: str, terms) -> tuple[str, ...]:
    terms = tuple(choice(fn, "terms", t, RING_TERMS) for t in terms)
    if not terms:
        raise ValueError(f"{fn}: terms must name at least one of 'alpha', 'beta', got ()")
    return terms


def _lstsq(p, n_bytes, seconds, terms) -> AlphaBetaFit:
    columns = {"alpha": 2 * (p - 1), "beta": 2 * (p - 1) / p * n_bytes}
    design = np.stack([columns[t] for t in terms], axis=1) / seconds[:, None]
    solution, *_ = np.linalg.lstsq(design, np.ones_like(seconds), rcond=None)
    fitted = dict(zip(terms, solution.tolist()))
    alpha, beta = fitted.get("alpha", 0.0), fitted.get("beta", 0.0)
    relative = (columns["alpha"] * alpha + columns["beta"] * beta) / seconds - 1
    return AlphaBetaFit(float(alpha), float(beta), float(np.sqrt(np.mean(relative**2))))


def fit_alpha_beta(p, n_bytes, seconds, *, terms: tuple[str, ...] = RING_TERMS) -> AlphaBetaFit:
    """Least-squares alpha and beta of the ring model ``2(p-1) alpha + 2(p-1)/p n beta``.

    Each equation is divided by its measured time, so the fit minimises
    relative error and small messages count as much as large ones. ``terms``
    picks the terms to fit (``("alpha",)``: latency alone; the other is 0).
    Nothing is clamped: noisy or inconsistent data can give a negative alpha
    or beta, and a caller who needs both positive must check them.
    """
    terms = _fit_terms("fit_alpha_beta", terms)
    p, n_bytes, seconds = _fit_arrays("fit_alpha_beta", p, n_bytes, seconds)
    if len(seconds) < len(terms):
        raise ValueError(f"fit_alpha_beta: fitting {len(terms)} terms needs at least {len(terms)} points, "
                         f"got {len(seconds)}")
    return _lstsq(p, n_bytes, seconds, terms)


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


def die_on_rank(bad_rank: int, how: str = "kill") -> int:
    """After one allreduce together, rank ``bad_rank`` dies hard while the others start a second.

    ``how``: ``"kill"`` (the process sends itself SIGKILL) or ``"exit"``
    (``os._exit(0)``: gone with a success code, without a word).
    """
    import os
    import signal

    choice("die_on_rank", "how", how, ("kill", "exit"))
    ring_allreduce(torch.ones(8))
    if dist.get_rank() == bad_rank:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(0)
    ring_allreduce(torch.ones(1 << 16))
    return dist.get_rank()


def fastest_by_block(rows: list[dict], name: str, blocks: int = 3) -> np.ndarray:
    """The fastest call of ``name`` (``"ring"`` or ``"backend"``) in each of ``blocks`` consecutive blocks of repeats.

    ``rows`` come from ``time_allreduce``; the result has one row per size and
    one column per block. Each block is an independent measurement: on a
    machine shared with other jobs a whole repeat can be disturbed, but rarely
    a whole block.
    """
    choice("fastest_by_block", "name", name, ("ring", "backend"))
    fastest = np.array([row[f"{name}_fastest_s"] for row in rows], dtype=np.float64)
    if not 1 <= blocks <= fastest.shape[1]:
        raise ValueError(f"fastest_by_block: blocks must be between 1 and the {fastest.shape[1]} repeats, got {blocks!r}")
    return np.stack([part.min(axis=1) for part in np.array_split(fastest, blocks, axis=1)], axis=1)
