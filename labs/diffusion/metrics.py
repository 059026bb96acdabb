"""Measuring samples: a moment-matched Gaussian baseline, a digit classifier and the scores it gives
(class coverage, confidence, a Frechet distance in its features), and convergence orders.

Everything here runs in seconds on a CPU and needs no download: the classifier is a small MLP
trained on scikit-learn's bundled digits.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .._checks import float_tensor, whole_number
from .._seed import global_rng_from


def gaussian_fit(data: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n samples of N(mean, covariance) fitted to ``data`` (m, D): the baseline a generative model must beat.

    It matches the data's first two moments exactly, so a model is only better than this
    where it has learned something beyond them (clusters, curved shapes, strokes).
    """
    float_tensor("gaussian_fit", "data", data, ndim=2)
    n = whole_number("gaussian_fit", "n", n)
    if data.shape[0] < 2:
        raise ValueError(f"gaussian_fit: data needs at least 2 rows to fit a covariance, got {data.shape[0]}")
    x = data.double()
    mean = x.mean(0)
    cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
    # a tiny ridge keeps the Cholesky factor real for rank-deficient data (digits have constant pixels)
    chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(x.shape[1], dtype=x.dtype))
    z = torch.randn(n, x.shape[1], generator=generator, dtype=torch.float64)
    return (mean + z @ chol.T).to(data.dtype)


class DigitClassifier(nn.Module):
    """A one-hidden-layer MLP on 8x8 digits in [-1, 1]: 64 -> ``hidden`` (tanh) -> 10 classes.

    ``features(x)`` is the hidden layer, the space where ``frechet_distance`` compares
    samples with real digits (the role the Inception network plays for FID).
    """

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.hidden = nn.Linear(64, hidden)
        self.out = nn.Linear(hidden, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.hidden(x.reshape(-1, 64).float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class DigitClassifierFit(NamedTuple):
    """What ``train_digit_classifier`` returns: the classifier, its two splits of the digits, its accuracy."""

    classifier: DigitClassifier
    train_images: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    accuracy: float


def train_digit_classifier(*, seed: int = 0, hidden: int = 64, steps: int = 300, test_fraction: float = 0.3):
    """Train ``DigitClassifier`` on scikit-learn's digits (full-batch Adam, weight decay).

    The images are split by ``seed`` into a training part and a held-out part of
    ``test_fraction``. Returns a ``DigitClassifierFit``: the classifier (eval mode), the training
    and held-out images (in [-1, 1], (n, 64)), the held-out labels and accuracy. A generative model
    judged by this classifier should train on ``train_images`` only. Torch's global RNG is not used.
    """
    from sklearn.datasets import load_digits

    fn = "train_digit_classifier"
    seed = whole_number(fn, "seed", seed, minimum=0)
    steps = whole_number(fn, "steps", steps)
    if not (isinstance(test_fraction, float) and 0.0 < test_fraction < 1.0):
        raise ValueError(f"{fn}: test_fraction must be a float in (0, 1), got {test_fraction!r}")
    bunch = load_digits()
    images = torch.as_tensor(bunch.data, dtype=torch.float32) / 8.0 - 1.0
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    with global_rng_from(generator):
        model = DigitClassifier(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(images[train]), labels[train])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[test]).argmax(1) == labels[test]).float().mean().item()
    return DigitClassifierFit(model, images[train], images[test], labels[test], accuracy)


def frechet_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)) between Gaussians fitted to features (n, F).

    The Frechet (2-Wasserstein) distance between the two fitted Gaussians, squared, as in FID.
    """
    from scipy import linalg

    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if hasattr(b, "detach") else b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"frechet_distance: a and b must be (n, F) feature arrays with the same F and n >= 2, "
                         f"got shapes {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


@torch.no_grad()
def classifier_scores(classifier: DigitClassifier, samples: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Score digit samples (n, 64) with a trained classifier, against real digits ``reference``.

    Returns ``confidence`` (median top-class probability: does each sample look like some digit?),
    ``coverage`` (the entropy of the predicted-class histogram over log 10: 1 when all ten
    classes are equally frequent, 0 when every sample is the same class), and ``fd`` (the
    Frechet distance between classifier features of samples and of ``reference``).
    """
    float_tensor("classifier_scores", "samples", samples, ndim=2)
    float_tensor("classifier_scores", "reference", reference, ndim=2)
    if samples.shape[1] != 64 or reference.shape[1] != 64:
        raise ValueError(f"classifier_scores: samples and reference must be (n, 64) digit images, "
                         f"got {tuple(samples.shape)} and {tuple(reference.shape)}")
    x = samples.float().clamp(-1, 1)
    probs = torch.softmax(classifier(x), dim=1)
    counts = torch.bincount(probs.argmax(1), minlength=10).double()
    share = counts / counts.sum()
    entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
    return {
        "confidence": probs.max(1).values.median().item(),
        "coverage": entropy / math.log(10),
        "fd": frechet_distance(classifier.features(x), classifier.features(reference.float())),
    }


def convergence_order(steps, errors) -> float:
    """The order p in error ~ C steps^(-p): minus the least-squares slope of log error on log steps."""
    steps, errors = np.asarray(steps, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    if steps.ndim != 1 or steps.shape != errors.shape or len(steps) < 2:
        raise ValueError(f"convergence_order: steps and errors must be 1-D of the same length >= 2, "
                         f"got shapes {steps.shape} and {errors.shape}")
    if (steps <= 0).any() or (errors <= 0).any():
        raise ValueError("convergence_order: steps and errors must be positive (their logs are fitted)")
    return float(-np.polyfit(np.log(steps), np.log(errors), 1)[0])
