"""Learning the score: toy data, a small MLP score model, denoising score matching, a sample-quality metric."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .._checks import choice, float_tensor, positive, real_number, whole_number
from .._seed import global_rng_from
from ..book import progress
from .sde import SDE, _bcast, check_sde, check_state

# -- data ------------------------------------------------------------------


def two_moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """Two interleaved half circles (as in scikit-learn's make_moons), centred, (n, 2) float32."""
    whole_number("two_moons", "n", n)
    angle = math.pi * torch.rand(n, generator=generator)
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x - 0.5, y - 0.25], dim=1) + noise * torch.randn(n, 2, generator=generator)
    return points / 0.7


def swiss_roll(n: int, noise: float = 0.3, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 2-D Swiss roll: a spiral of 1.5 turns, scaled to about unit spread, (n, 2) float32."""
    whole_number("swiss_roll", "n", n)
    angle = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    points = torch.stack([angle * torch.cos(angle), angle * torch.sin(angle)], dim=1)
    return (points + noise * torch.randn(n, 2, generator=generator)) / 7.0


def checkerboard(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform on the 8 dark squares of a 4 x 4 board on [-2, 2]^2, (n, 2) float32."""
    whole_number("checkerboard", "n", n)
    x = 4 * torch.rand(n, generator=generator) - 2
    column = torch.floor(x + 2)
    y = torch.rand(n, generator=generator) + 2 * torch.randint(0, 2, (n,), generator=generator) - 2
    y = y + (column % 2)  # shift by one row on odd columns: only dark squares
    return torch.stack([x, y], dim=1)


def digits() -> torch.Tensor:
    """scikit-learn's bundled 8x8 digits (1797 images, no download), as (1797, 64) in [-1, 1]."""
    from sklearn.datasets import load_digits

    return torch.as_tensor(load_digits().data, dtype=torch.float32) / 8.0 - 1.0


TOY_DATA = {"two moons": two_moons, "Swiss roll": swiss_roll, "checkerboard": checkerboard}

# -- model -----------------------------------------------------------------


class ScoreMLP(nn.Module):
    """s_theta(x, t) = MLP([x, Fourier features of t]) / s(t).

    Dividing by the marginal std s(t) lets the network predict the (unit-scale)
    noise direction while the score itself grows like 1/s(t) near t = 0.
    With ``seed`` the initial weights are drawn from it and torch's global RNG is
    left as it was; without, they come from torch's default generator, as for any module.
    """

    def __init__(self, dim: int, sde: SDE, hidden: int = 128, depth: int = 3, n_frequencies: int = 8, *,
                 seed: int | None = None):
        super().__init__()
        check_sde("ScoreMLP", sde)
        dim, hidden, depth, n_frequencies = (
            whole_number("ScoreMLP", name, v)
            for name, v in [("dim", dim), ("hidden", hidden), ("depth", depth), ("n_frequencies", n_frequencies)]
        )
        self.sde, self.dim = sde, dim
        self.register_buffer("frequencies", 2 * math.pi * torch.arange(1, n_frequencies + 1, dtype=torch.float32))
        init = None if seed is None else torch.Generator().manual_seed(whole_number("ScoreMLP", "seed", seed, minimum=0))
        with global_rng_from(init) if init is not None else contextlib.nullcontext():
            layers, width = [], dim + 2 * n_frequencies
            for _ in range(depth):
                layers += [nn.Linear(width, hidden), nn.SiLU()]
                width = hidden
            layers.append(nn.Linear(width, dim))
            self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None].to(self.frequencies) * self.frequencies
        h = torch.cat([x.flatten(1).to(self.frequencies), torch.sin(angles), torch.cos(angles)], dim=1)
        std = self.sde._mean_std(t.to(self.frequencies))[1]
        return (self.net(h) / std[:, None]).reshape(x.shape).to(x.dtype)


# -- loss and training -----------------------------------------------------

WEIGHTINGS = ("variance", "likelihood")


def dsm_loss(score_model, x0: torch.Tensor, sde: SDE, *, eps: float = 1e-5, weighting: str = "variance",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching, averaged over t ~ U(eps, 1) and the batch:

    E_t lambda(t) E_{x0, z} || s_theta(m(t) x0 + s(t) z, t) + z / s(t) ||^2

    since grad log p_t(x | x0) = -z / s(t). ``weighting``: ``"variance"``,
    lambda = s(t)^2 (every t counts alike); ``"likelihood"``, lambda = g(t)^2
    (the weighting that bounds the negative log-likelihood).
    """
    check_state("dsm_loss", x0)
    check_sde("dsm_loss", sde)
    choice("dsm_loss", "weighting", weighting, WEIGHTINGS)
    real_number("dsm_loss", "eps", eps, low=0.0, high=1.0, low_open=True, high_open=True)
    gen_device = generator.device if generator is not None else x0.device
    t = (eps + (1 - eps) * torch.rand(x0.shape[0], generator=generator, device=gen_device, dtype=x0.dtype)).to(x0.device)
    z = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=x0.dtype).to(x0.device)
    mean, std = sde.marginal(x0, t)
    x = mean + _bcast(std, x0) * z
    residual = score_model(x, t) + z / _bcast(std, x0)
    weight = std**2 if weighting == "variance" else sde.sde(x, t)[1] ** 2
    return (weight * residual.flatten(1).pow(2).sum(1)).mean()


def train_score_model(data: torch.Tensor, sde: SDE, *, steps: int = 2000, batch_size: int = 256, lr: float = 2e-3,
                      hidden: int = 128, depth: int = 3, seed: int = 0, device=None) -> tuple[ScoreMLP, list[float]]:
    """Fit a ScoreMLP to ``data`` (n, D) by DSM with Adam and a cosine learning-rate decay.

    ``seed`` draws the initial weights, the mini-batches, the times and the noise; torch's
    global RNG is not used. Returns the model (in eval mode, on ``device``) and the loss of every step.
    """
    fn = "train_score_model"
    check_state(fn, data)
    steps, batch_size = whole_number(fn, "steps", steps), whole_number(fn, "batch_size", batch_size)
    positive(fn, "lr", lr)
    seed = whole_number(fn, "seed", seed, minimum=0)
    device = data.device if device is None else torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    model = ScoreMLP(data.shape[1], sde, hidden=hidden, depth=depth, seed=seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    data = data.to(device)
    losses = []
    for _ in progress(range(steps), desc="DSM training"):
        index = torch.randint(0, data.shape[0], (batch_size,), generator=generator, device=device)
        loss = dsm_loss(model, data[index], sde, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return model.eval(), losses


# -- sample quality --------------------------------------------------------


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two equal-size point clouds (n, D).

    Projects both onto random unit directions, where optimal transport in 1-D
    is sorting, and averages the squared distances: sqrt(E_dir W2^2).
    """
    float_tensor("sliced_wasserstein", "a", a, ndim=2)
    float_tensor("sliced_wasserstein", "b", b, ndim=2)
    if a.shape != b.shape:
        raise ValueError(
            f"sliced_wasserstein: a and b must have the same shape (n, D), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n_projections = whole_number("sliced_wasserstein", "n_projections", n_projections)
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=0, keepdim=True)
    pa = torch.sort(a.double().cpu() @ directions, dim=0).values
    pb = torch.sort(b.double().cpu() @ directions, dim=0).values
    return math.sqrt((pa - pb).pow(2).mean().item())
