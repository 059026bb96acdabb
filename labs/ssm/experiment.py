"""Small S4D models, several initialisations and seeds trained at once, on two sequence tasks.

The SSM layers are diagonal (S4D): per channel, ``N`` complex modes
``x' = a x + b u``, discretised by zero-order hold and applied as a causal
convolution with the kernel ``K_k = 2 Re sum_n c_n bd_n ad_n^k`` (the modes
come in conjugate pairs, so only one of each pair is stored). The arms differ
only in the initial ``(a, b)``:

* ``"legs"``: S4D-LegS, the diagonalised normal part of HiPPO-LegS;
* ``"lin"``: S4D-Lin, ``a_n = -1/2 + i pi n``, ``b_n = 1`` (no HiPPO);
* ``"random"``: ``a_n = -1/2 + i w_n`` with ``w_n`` log-uniform over the
  S4D-LegS frequency range, and complex normal ``b`` scaled to S4D-LegS's
  root-mean-square ``|b|``: LegS's spread and scale, without its structure;
* ``"narrow"``: decay rates ``exp(N(0, 1))``, frequencies ``N(0, 1)``,
  ``b ~ N(0, 1)``: random, with no spread of frequencies.

Everything else (``C``, ``dt``, ``D``, the dense layers) is drawn from the
seed alone, so within a seed the arms start from the same weights apart from
``(a, b)``. The models are *stacked*: every parameter carries a leading axis of
length ``M`` (one entry per arm and seed), and one optimiser step trains all
of them (Adam is element-wise, so the stacked models train exactly as they
would one by one). Every random draw comes from the seeds given; the global RNG
is left as it was.

The tasks: ``sequential_digits``, scikit-learn's 8x8 digits read pixel by
pixel (length 64) and classified from the last step; and ``delay_task``, a
band-limited random signal of length ``L`` to be reproduced ``delay`` steps
later, which needs a memory of ``delay`` steps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import choice, positive, whole_number
from .._seed import seed_generator as _generator
from ..book import progress
from . import fft_conv, hippo, ssm_kernel

INITS = ("legs", "lin", "random", "narrow")


def s4d_legs_init(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D-LegS: diagonalise the normal part of HiPPO-LegS with ``2N`` coefficients, keep one mode per conjugate pair.

    ``A + P P^T = -I/2 + S`` with ``S`` skew-symmetric, so its eigenvalues are
    ``-1/2 + i w``; ``B`` is expressed in the same eigenbasis (``V^* B``).
    """
    A, B = hippo("legs", 2 * N)
    P = torch.sqrt(torch.arange(2 * N, dtype=torch.float64) + 0.5)
    normal = A + torch.outer(P, P)
    w, V = torch.linalg.eig(normal)
    keep = torch.argsort(w.imag, descending=True)[:N]  # positive imaginary parts: one of each pair
    return w[keep], (V.conj().T @ B.to(V.dtype))[keep]


def s4d_lin_init(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D-Lin: ``a_n = -1/2 + i pi n``, ``b_n = 1``: frequencies spread evenly, no HiPPO in it."""
    n = torch.arange(N, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), math.pi * n), torch.ones(N, dtype=torch.complex128)


def random_init(N: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``-1/2 + i w`` with ``w`` log-uniform over S4D-LegS's frequency range; ``b`` at S4D-LegS's rms scale."""
    legs_a, legs_b = s4d_legs_init(N)
    low, high = math.log(legs_a.imag.min().item()), math.log(legs_a.imag.max().item())
    w = torch.exp(low + (high - low) * torch.rand(N, dtype=torch.float64, generator=generator))
    b = torch.complex(*torch.randn(2, N, dtype=torch.float64, generator=generator)) / math.sqrt(2)
    return torch.complex(torch.full_like(w, -0.5), w), b * legs_b.abs().pow(2).mean().sqrt()


def narrow_init(N: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random stable diagonal: decay rates ``exp(N(0,1))``, frequencies ``N(0,1)``, ``B ~ N(0,1)``."""
    real = -torch.exp(torch.randn(N, dtype=torch.float64, generator=generator))
    imag = torch.randn(N, dtype=torch.float64, generator=generator)
    b = torch.randn(N, dtype=torch.float64, generator=generator)
    return torch.complex(real, imag), b.to(torch.complex128)


def mode_init(init: str, N: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The initial ``(a, b)`` of one S4D layer's ``N`` modes under ``init`` (random arms draw from ``seed``)."""
    choice("mode_init", "init", init, INITS)
    whole_number("mode_init", "N", N)
    if init == "legs":
        return s4d_legs_init(N)
    if init == "lin":
        return s4d_lin_init(N)
    generator = _generator("mode_init", seed, f"modes/{init}/{N}")
    return (random_init if init == "random" else narrow_init)(N, generator)


def _uniform(generator, bound, *shape):
    return (2 * torch.rand(*shape, generator=generator) - 1) * bound


def _s4d_parameters(arms, shared, layer: int, H: int, N: int, dt_min: float, dt_max: float) -> nn.ParameterDict:
    """One stacked S4D layer's parameters: ``(a, b)`` by each arm's init, ``C``, ``dt``, ``D`` from its seed's ``shared``."""

    def stack(draw):  # one draw per model from its seed's shared stream: identical across arms
        return nn.Parameter(torch.stack([draw(g) for g in shared]))

    modes = [mode_init(init, N, seed=seed + 7919 * layer) for init, seed in arms]
    p = nn.ParameterDict()
    p["log_neg_re"] = nn.Parameter(torch.stack([torch.log(-a.real) for a, _ in modes]).float()[:, None].repeat(1, H, 1))
    p["im"] = nn.Parameter(torch.stack([a.imag for a, _ in modes]).float()[:, None].repeat(1, H, 1))
    p["B"] = nn.Parameter(torch.view_as_real(torch.stack([b for _, b in modes]).to(torch.complex64))[:, None]
                          .repeat(1, H, 1, 1))
    p["C"] = stack(lambda g: torch.randn(H, N, 2, generator=g) * math.sqrt(0.5))
    p["log_dt"] = stack(lambda g: math.log(dt_min) + torch.rand(H, generator=g) * math.log(dt_max / dt_min))
    p["D"] = stack(lambda g: torch.randn(H, generator=g))
    return p


def s4d_kernels(p: nn.ParameterDict, L: int) -> torch.Tensor:
    """The ``(M, H, L)`` real convolution kernels ``2 Re K`` of one stacked S4D layer."""
    a = torch.complex(-torch.exp(p["log_neg_re"]), p["im"])
    K = ssm_kernel(a, torch.view_as_complex(p["B"]), torch.view_as_complex(p["C"]), torch.exp(p["log_dt"]), L,
                   method="zoh")
    return 2 * K.real


class StackedS4D(nn.Module):
    """``M = len(arms)`` independent models ``pixel -> H channels -> (S4D, GELU, mix, residual, norm) x depth -> class``.

    ``arms`` is a list of ``(init, seed)``. Inputs ``(M, batch, L)``, logits
    ``(M, batch, classes)`` from the last step.
    """

    def __init__(self, arms, *, H: int, N: int, depth: int, classes: int, dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        shared = [_generator("StackedS4D", seed, f"shared/{H}/{N}/{depth}") for _, seed in arms]

        def stack(draw):
            return nn.Parameter(torch.stack([draw(g) for g in shared]))

        M = len(arms)
        self.enc_w, self.enc_b = stack(lambda g: _uniform(g, 1.0, H)), stack(lambda g: _uniform(g, 1.0, H))
        self.layers = nn.ModuleList()
        for layer in range(depth):
            p = _s4d_parameters(arms, shared, layer, H, N, dt_min, dt_max)
            p["mix_w"] = stack(lambda g: _uniform(g, 1 / math.sqrt(H), H, H))
            p["mix_b"] = stack(lambda g: _uniform(g, 1 / math.sqrt(H), H))
            p["norm_w"], p["norm_b"] = nn.Parameter(torch.ones(M, H)), nn.Parameter(torch.zeros(M, H))
            self.layers.append(p)
        self.dec_w = stack(lambda g: _uniform(g, 1 / math.sqrt(H), H, classes))
        self.dec_b = stack(lambda g: _uniform(g, 1 / math.sqrt(H), classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (M, batch, L)
        h = x[..., None] * self.enc_w[:, None, None] + self.enc_b[:, None, None]  # (M, batch, L, H)
        for p in self.layers:
            K = s4d_kernels(p, x.shape[-1])  # (M, H, L)
            u = h.transpose(-1, -2)  # (M, batch, H, L)
            z = nn.functional.gelu(fft_conv(u, K[:, None]) + p["D"][:, None, :, None] * u)  # (M, batch, H, L)
            z = torch.einsum("mbhl,mhk->mblk", z, p["mix_w"]) + p["mix_b"][:, None, None]  # (M, batch, L, H)
            h = nn.functional.layer_norm(h + z, h.shape[-1:]) * p["norm_w"][:, None, None] + p["norm_b"][:, None, None]
        return torch.einsum("mbh,mhc->mbc", h[:, :, -1], self.dec_w) + self.dec_b[:, None]


class StackedFilter(nn.Module):
    """``M`` linear filters ``y = sum_h K_h * u + D u``: ``H`` S4D channels of ``N`` modes each, read from ``u`` directly.

    A delay is a linear map, so the model for the delay task has nothing else:
    what it can do is what its kernels can represent.
    """

    def __init__(self, arms, *, H: int, N: int, dt_min: float, dt_max: float):
        super().__init__()
        shared = [_generator("StackedFilter", seed, f"shared/{H}/{N}") for _, seed in arms]
        self.p = _s4d_parameters(arms, shared, 0, H, N, dt_min, dt_max)

    def kernel(self, L: int) -> torch.Tensor:
        """``(M, L)``: the channels' kernels summed."""
        return s4d_kernels(self.p, L).sum(1) / self.p["D"].shape[-1]

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # u: (M, batch, L)
        return fft_conv(u, self.kernel(u.shape[-1])[:, None]) + self.p["D"].mean(-1)[:, None, None] * u


def _arms(fn: str, inits, seeds) -> list[tuple[str, int]]:
    inits, seeds = list(inits), list(seeds)
    if not inits or not seeds:
        raise ValueError(f"{fn}: inits and seeds must be non-empty lists, got {inits!r} and {seeds!r}")
    for init in inits:
        choice(fn, "init", init, INITS)
    for seed in seeds:
        whole_number(fn, "seed", seed, minimum=0)
    return [(init, seed) for init in inits for seed in seeds]


def sequential_digits(*, seed: int, test_fraction: float = 0.2):
    """8x8 digits as length-64 pixel sequences in [0, 1], split at random (by ``seed``) into train and test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=_generator("sequential_digits", seed, "split"))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def _history(arms, metric_names):
    return {arm: {name: [] for name in metric_names} for arm in arms}


def train_digits(inits, seeds, *, epochs: int = 20, batch: int = 64, lr: float = 5e-3, H: int = 16, N: int = 8,
                 depth: int = 2) -> dict:
    """Train one model per ``(init, seed)``, all stacked; return ``{(init, seed): history}``.

    A history holds per-epoch ``train_loss`` and ``test_accuracy`` lists. A seed
    fixes its split, its shared initial weights and its batch order, the same
    for every init.
    """
    arms = _arms("train_digits", inits, seeds)
    whole_number("train_digits", "epochs", epochs)
    whole_number("train_digits", "batch", batch)
    lr = positive("train_digits", "lr", lr)
    splits = {seed: sequential_digits(seed=seed) for seed in dict.fromkeys(s for _, s in arms)}
    x_train = torch.stack([splits[s][0][0] for _, s in arms])  # (M, n_train, 64)
    y_train = torch.stack([splits[s][0][1] for _, s in arms])
    x_test = torch.stack([splits[s][1][0] for _, s in arms])
    y_test = torch.stack([splits[s][1][1] for _, s in arms])
    model = StackedS4D(arms, H=H, N=N, depth=depth, classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    orders = {s: _generator("train_digits", s, "order") for s in dict.fromkeys(s for _, s in arms)}
    history = _history(arms, ("train_loss", "test_accuracy"))
    n_train, rows = x_train.shape[1], torch.arange(len(arms))[:, None]
    for _ in progress(range(epochs), desc="S4D digits"):
        per_seed = {s: torch.randperm(n_train, generator=g) for s, g in orders.items()}
        order = torch.stack([per_seed[s] for _, s in arms])  # (M, n_train): each seed its own order
        total = torch.zeros(len(arms))
        for start in range(0, n_train, batch):
            idx = order[:, start:start + batch]
            logits = model(x_train[rows, idx])  # (M, batch, 10)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y_train[rows, idx].flatten(), reduction="none")
            loss = loss.view(len(arms), -1).mean(1)
            optimizer.zero_grad()
            loss.sum().backward()  # the models share nothing, so each gets its own gradient
            optimizer.step()
            total += loss.detach() * idx.shape[1]
        with torch.no_grad():
            accuracy = (model(x_test).argmax(-1) == y_test).float().mean(1)
        for i, arm in enumerate(arms):
            history[arm]["train_loss"].append(total[i].item() / n_train)
            history[arm]["test_accuracy"].append(accuracy[i].item())
    return history


def band_limited_noise(n: int, L: int, *, cycles: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random signals of length ``L`` with frequencies of 1 to ``cycles`` cycles per sequence, unit variance."""
    spectrum = torch.zeros(n, L // 2 + 1, dtype=torch.complex64)
    spectrum[:, 1:cycles + 1] = torch.complex(*torch.randn(2, n, cycles, generator=generator))
    x = torch.fft.irfft(spectrum, n=L)
    return x / x.pow(2).mean(-1, keepdim=True).sqrt()


def delay_task(n: int, L: int, delay: int, *, cycles: int, generator: torch.Generator):
    """Inputs ``(n, L)`` and targets ``y_k = u_{k - delay}`` (zero before ``delay``)."""
    u = band_limited_noise(n, L, cycles=cycles, generator=generator)
    y = torch.nn.functional.pad(u, (delay, 0))[..., :L]
    return u, y


def train_delay(inits, seeds, *, L: int = 1024, delay: int = 512, cycles: int = 24, steps: int = 300,
                batch: int = 16, lr: float = 1e-2, H: int = 4, N: int = 16, device=None) -> dict:
    """Train one model per ``(init, seed)`` to output its input ``delay`` steps late; ``{(init, seed): history}``.

    The loss is the mean squared error over the steps ``k >= delay`` (where the
    target is defined), relative to the signal's unit variance: 1 is what
    outputting zero scores. A history holds per-step ``train_loss`` and, every
    tenth step and at the end, ``test_loss`` on a fixed held-out batch.
    """
    arms = _arms("train_delay", inits, seeds)
    for name, value in (("L", L), ("delay", delay), ("cycles", cycles), ("steps", steps), ("batch", batch)):
        whole_number("train_delay", name, value)
    if delay >= L or 2 * cycles >= L:
        raise ValueError(f"train_delay: need delay < L and 2 * cycles < L, got L={L}, delay={delay}, cycles={cycles}")
    lr = positive("train_delay", "lr", lr)
    device = torch.device("cpu") if device is None else torch.device(device)
    model = StackedFilter(arms, H=H, N=N, dt_min=1 / L, dt_max=10 / L).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    data = {s: _generator("train_delay", s, "data") for s in dict.fromkeys(s for _, s in arms)}
    test = {s: delay_task(256, L, delay, cycles=cycles, generator=_generator("train_delay", s, "test"))
            for s in data}
    x_test = torch.stack([test[s][0] for _, s in arms]).to(device)
    y_test = torch.stack([test[s][1] for _, s in arms]).to(device)
    history = _history(arms, ("train_loss", "test_loss"))

    def loss_of(x, y):  # (M,) mean squared error over k >= delay
        return (model(x) - y)[..., delay:].pow(2).mean((1, 2))

    for step in progress(range(steps), desc="S4D delay"):
        per_seed = {s: delay_task(batch, L, delay, cycles=cycles, generator=g) for s, g in data.items()}
        x = torch.stack([per_seed[s][0] for _, s in arms]).to(device)
        y = torch.stack([per_seed[s][1] for _, s in arms]).to(device)
        loss = loss_of(x, y)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
        for i, arm in enumerate(arms):
            history[arm]["train_loss"].append(loss[i].item())
        if step % 10 == 9 or step == steps - 1:
            with torch.no_grad():
                test_loss = loss_of(x_test, y_test)
            for i, arm in enumerate(arms):
                history[arm]["test_loss"].append(test_loss[i].item())
    return history
