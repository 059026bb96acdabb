"""A tiny S4D-style model on sequential 8x8 digits: HiPPO-LegS initialisation against a random one.

Each 8x8 digit from scikit-learn's bundled ``load_digits`` is read one pixel at
a time (length 64), and the class is predicted from the last time step only,
so the model must carry what it saw at the start to the end. The SSM layers
are diagonal (S4D): per channel, ``N`` complex modes ``x' = a x + b u``,
discretised by zero-order hold and applied as a causal convolution with the
kernel ``K_k = 2 Re sum_n c_n bd_n ad_n^k`` (the modes come in conjugate
pairs, so only one of each pair is stored).

Every random draw (the split, the initial weights, the batch order) comes from
the ``seed`` a function is given; the chapter derives it from the book seed.
The global RNG is left as it was.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import choice, whole_number
from .._seed import global_rng_from
from .._seed import seed_generator as _generator
from ..book import progress
from . import fft_conv, hippo, ssm_kernel

INITS = ("legs", "random")


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


def random_init(N: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random stable diagonal: decay rates ``exp(N(0,1))``, frequencies ``N(0,1)``, ``B ~ N(0,1)``."""
    real = -torch.exp(torch.randn(N, dtype=torch.float64, generator=generator))
    imag = torch.randn(N, dtype=torch.float64, generator=generator)
    b = torch.randn(N, dtype=torch.float64, generator=generator)
    return torch.complex(real, imag), b.to(torch.complex128)


class S4DLayer(nn.Module):
    """``H`` independent diagonal SSMs (one per channel) with a skip term ``D u``."""

    def __init__(self, H: int, N: int, init: str, generator: torch.Generator,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        a, b = s4d_legs_init(N) if init == "legs" else random_init(N, generator)
        self.log_neg_re = nn.Parameter(torch.log(-a.real).float().repeat(H, 1))
        self.im = nn.Parameter(a.imag.float().repeat(H, 1))
        self.B = nn.Parameter(torch.view_as_real(b.to(torch.complex64)).repeat(H, 1, 1))
        c = torch.randn(H, N, 2, generator=generator) * math.sqrt(0.5)
        self.C = nn.Parameter(c)
        u = torch.rand(H, generator=generator)
        self.log_dt = nn.Parameter(math.log(dt_min) + u * (math.log(dt_max) - math.log(dt_min)))
        self.D = nn.Parameter(torch.randn(H, generator=generator))

    def kernel(self, L: int) -> torch.Tensor:
        a = torch.complex(-torch.exp(self.log_neg_re), self.im)
        K = ssm_kernel(a, torch.view_as_complex(self.B), torch.view_as_complex(self.C), torch.exp(self.log_dt), L,
                       method="zoh")
        return 2 * K.real

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # u: (batch, H, L)
        return fft_conv(u, self.kernel(u.shape[-1])) + self.D[:, None] * u


class SequenceClassifier(nn.Module):
    """Pixel -> ``H`` channels -> (S4D, GELU, mix, residual, norm) x depth -> last step -> class."""

    def __init__(self, init: str, *, seed: int, H: int = 32, N: int = 16, depth: int = 2, classes: int = 10):
        super().__init__()
        choice("SequenceClassifier", "init", init, INITS)
        generator = _generator("SequenceClassifier", seed, "init")
        with global_rng_from(_generator("SequenceClassifier", seed, "layers")):  # the nn layers' initial weights
            self.encoder = nn.Linear(1, H)
            self.ssms = nn.ModuleList(S4DLayer(H, N, init, generator) for _ in range(depth))
            self.mixers = nn.ModuleList(nn.Linear(H, H) for _ in range(depth))
            self.norms = nn.ModuleList(nn.LayerNorm(H) for _ in range(depth))
            self.decoder = nn.Linear(H, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, L)
        h = self.encoder(x[..., None])  # (batch, L, H)
        for ssm, mix, norm in zip(self.ssms, self.mixers, self.norms):
            z = ssm(h.transpose(1, 2)).transpose(1, 2)
            h = norm(h + mix(nn.functional.gelu(z)))
        return self.decoder(h[:, -1])


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


def train_digits(init: str, *, seed: int, epochs: int = 20, batch: int = 64, lr: float = 5e-3, H: int = 32,
                 N: int = 16) -> dict:
    """Train one model; return per-epoch ``train_loss`` and ``test_accuracy`` lists.

    ``seed`` fixes the split, the initial weights and the batch order (the same for both inits).
    """
    choice("train_digits", "init", init, INITS)
    (x_train, y_train), (x_test, y_test) = sequential_digits(seed=seed)
    model = SequenceClassifier(init, H=H, N=N, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator = _generator("train_digits", seed, "order")
    history = {"train_loss": [], "test_accuracy": []}
    for _ in progress(range(epochs), desc=f"S4D ({init})"):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(-1) == y_test).float().mean().item()
        history["train_loss"].append(total / len(y_train))
        history["test_accuracy"].append(accuracy)
    return history
