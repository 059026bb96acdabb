"""Several score models trained at once: one stacked MLP whose members have their own weights,
their own data and their own seed, run with batched matrix products (``torch.baddbmm``).

On a CPU a small MLP is bound by per-call overhead, not arithmetic, so S independent
models in one stacked call cost little more than one. That is how the chapter trains one
model per seed for every claim it checks over seeds.

A stacked model is an ordinary score function for the samplers: it takes x of shape
(S * n, D), reads it as S blocks of n samples, and member s scores block s. Sampling all S
members at once is one sampler call on a batch S times larger.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import float_tensor, positive, whole_number
from .._seed import seed_generator
from ..book import progress
from .sde import SDE, _bcast, check_sde
from .training import WEIGHTINGS


def _init_linear(generator: torch.Generator, fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from ``generator``."""
    bound = 1 / math.sqrt(fan_in)
    weight = (2 * torch.rand(fan_in, fan_out, generator=generator) - 1) * bound
    bias = (2 * torch.rand(1, fan_out, generator=generator) - 1) * bound
    return weight, bias


class StackedScoreMLP(nn.Module):
    """S score models s_theta_s(x, t) = MLP_s([x, Fourier features of t]) / s(t), one per seed.

    The same architecture as ``ScoreMLP``; member s draws its initial weights from
    ``seeds[s]`` (torch's global RNG is not used). ``forward(x, t)`` takes x of shape
    (S * n, D) or (S, n, D) and scores block s with member s.
    """

    def __init__(self, seeds, dim: int, sde: SDE, hidden: int = 128, depth: int = 3, n_frequencies: int = 8):
        super().__init__()
        fn = "StackedScoreMLP"
        check_sde(fn, sde)
        if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__") or len(seeds) == 0:
            raise ValueError(f"{fn}: seeds must be a non-empty list of ints (one per member), got {seeds!r}")
        self.seeds = [whole_number(fn, "seeds[i]", s, minimum=0) for s in seeds]
        dim, hidden, depth, n_frequencies = (
            whole_number(fn, name, v)
            for name, v in [("dim", dim), ("hidden", hidden), ("depth", depth), ("n_frequencies", n_frequencies)]
        )
        self.sde, self.dim, self.n_members = sde, dim, len(self.seeds)
        self.register_buffer("frequencies", 2 * math.pi * torch.arange(1, n_frequencies + 1, dtype=torch.float32))
        widths = [dim + 2 * n_frequencies] + [hidden] * depth + [dim]
        generators = [seed_generator(fn, s, "stacked score model: init") for s in self.seeds]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            pairs = [_init_linear(g, fan_in, fan_out) for g in generators]
            self.weights.append(nn.Parameter(torch.stack([w for w, _ in pairs])))  # (S, fan_in, fan_out)
            self.biases.append(nn.Parameter(torch.stack([b for _, b in pairs])))  # (S, 1, fan_out)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        S = self.n_members
        if x.shape[0] % S and x.ndim == 2:
            raise ValueError(f"StackedScoreMLP: the batch ({x.shape[0]}) must be a multiple of the number of members ({S})")
        blocks = x.reshape(S, -1, self.dim).to(self.frequencies)  # (S, n, D)
        tt = t.reshape(S, -1).to(self.frequencies)  # (S, n)
        angles = tt[..., None] * self.frequencies  # (S, n, F)
        h = torch.cat([blocks, torch.sin(angles), torch.cos(angles)], dim=-1)  # (S, n, D + 2F)
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # (S, n, fan_out)
            if k < last:
                h = nn.functional.silu(h)
        std = self.sde._mean_std(tt)[1]  # (S, n)
        return (h / std[..., None]).reshape(x.shape).to(x.dtype)

    def member(self, s: int):
        """Member s alone, as a score function on (n, D) batches."""
        s = whole_number("StackedScoreMLP.member", "s", s, minimum=0)
        if s >= self.n_members:
            raise ValueError(f"StackedScoreMLP.member: s must be below {self.n_members}, got {s}")

        def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            h = x.reshape(1, -1, self.dim).to(self.frequencies)
            angles = t.reshape(1, -1, 1).to(self.frequencies) * self.frequencies
            h = torch.cat([h, torch.sin(angles), torch.cos(angles)], dim=-1)
            last = len(self.weights) - 1
            for k, (w, b) in enumerate(zip(self.weights, self.biases)):
                h = torch.baddbmm(b[s:s + 1], h, w[s:s + 1])
                if k < last:
                    h = nn.functional.silu(h)
            std = self.sde._mean_std(t.to(self.frequencies))[1]
            return (h[0] / std[:, None]).reshape(x.shape).to(x.dtype)

        return score_fn


def train_score_models(data: torch.Tensor, sde: SDE, seeds, *, steps: int = 2000, batch_size: int = 256,
                       lr: float = 2e-3, hidden: int = 128, depth: int = 3, eps: float = 1e-5,
                       weighting: str = "variance", device=None) -> tuple[StackedScoreMLP, torch.Tensor]:
    """Fit one score model per seed, all at once, by denoising score matching (``dsm_loss``'s objective).

    ``data`` is (S, n, D): member s trains on ``data[s]`` (or (n, D): every member on the same
    data). Seed s draws member s's initial weights, mini-batches, times and noise. Adam with a
    cosine learning-rate decay, as ``train_score_model``; the members share nothing, so the sum
    of their losses has, per member, the gradient of that member's own loss.
    Returns the stacked model (eval mode) and the per-step losses, shape (steps, S).
    """
    fn = "train_score_models"
    check_sde(fn, sde)
    float_tensor(fn, "data", data)
    if data.ndim not in (2, 3):
        raise ValueError(f"{fn}: data must be (n, D) or (S, n, D), got shape {tuple(data.shape)}")
    model = StackedScoreMLP(seeds, data.shape[-1], sde, hidden=hidden, depth=depth)
    S = model.n_members
    if data.ndim == 3 and data.shape[0] != S:
        raise ValueError(f"{fn}: data has {data.shape[0]} data sets for {S} seeds; give one per seed or one (n, D)")
    steps, batch_size = whole_number(fn, "steps", steps), whole_number(fn, "batch_size", batch_size)
    positive(fn, "lr", lr)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"{fn}: weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    device = data.device if device is None else torch.device(device)
    data = (data if data.ndim == 3 else data.expand(S, *data.shape)).to(device)
    model = model.to(device)
    generators = [seed_generator(fn, s, "stacked score model: training") for s in model.seeds]
    if device.type != "cpu":
        generators = [torch.Generator(device=device).manual_seed(int(g.initial_seed())) for g in generators]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    n, D = data.shape[1], data.shape[2]
    members = torch.arange(S, device=device)[:, None]
    losses = torch.empty(steps, S)
    for step in progress(range(steps), desc="DSM training (stacked)"):
        index = torch.stack([torch.randint(0, n, (batch_size,), generator=g, device=device) for g in generators])
        t = torch.stack([eps + (1 - eps) * torch.rand(batch_size, generator=g, device=device) for g in generators])
        z = torch.stack([torch.randn(batch_size, D, generator=g, device=device) for g in generators])
        x0 = data[members, index]  # (S, batch, D)
        mean, std = sde.marginal(x0.reshape(S * batch_size, D), t.reshape(-1))
        std = std.reshape(S, batch_size)
        x = mean.reshape(S, batch_size, D) + std[..., None] * z
        residual = model(x, t) + z / std[..., None]
        weight = std**2 if weighting == "variance" else sde.sde(x.reshape(-1, D), t.reshape(-1))[1].reshape(S, -1) ** 2
        per_member = (weight * residual.pow(2).sum(-1)).mean(1)  # (S,)
        optimizer.zero_grad(set_to_none=True)
        per_member.sum().backward()
        optimizer.step()
        schedule.step()
        losses[step] = per_member.detach().cpu()
    return model.eval(), losses


def stacked_batch(x: torch.Tensor, n_members: int) -> torch.Tensor:
    """Samples of a stacked run, (S * n, D), as (S, n, D): block s came from member s."""
    float_tensor("stacked_batch", "x", x, min_ndim=2)
    n_members = whole_number("stacked_batch", "n_members", n_members)
    if x.shape[0] % n_members:
        raise ValueError(f"stacked_batch: the batch ({x.shape[0]}) must be a multiple of n_members ({n_members})")
    return x.reshape(n_members, -1, *x.shape[1:])
