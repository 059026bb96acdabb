"""The scaled softmax: reference against torch, the Triton kernel (interpreted) against the reference."""

import math

import pytest
import torch

import labs.scaling as scaling
from labs.scaling import reference, scaled_softmax, softmax_jacobian
from labs.scaling.experiment import train_retrieval
from labs.scaling.triton_softmax import scaled_softmax_triton

SHAPES = [(1,), (3, 1), (2, 63), (2, 65), (2, 3, 100), (1, 256)]


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_matches_torch(shape):
    x = torch.randn(shape, dtype=torch.float64) * 5
    torch.testing.assert_close(reference.scaled_softmax(x, 0.3), torch.softmax(0.3 * x, -1))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6), (torch.float16, 2e-3)])
def test_triton_forward_matches_reference(shape, dtype, tol):
    x = (torch.randn(shape) * 4).to(dtype)
    expected = reference.scaled_softmax(x.double(), 0.7)  # same (rounded) input, exact arithmetic
    assert rel_err(scaled_softmax_triton(x, 0.7), expected) < tol


@pytest.mark.parametrize("scale", [0.0, -1.5, 30.0])
def test_triton_forward_extreme_scales(scale):
    x = torch.randn(4, 65, dtype=torch.float64)
    out = scaled_softmax_triton(x, scale)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference.scaled_softmax(x, scale))


def test_triton_gradcheck():
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: scaled_softmax_triton(t, 0.8), (x,))


@pytest.mark.parametrize("shape", [(3, 1), (4, 65), (2, 2, 130)])
def test_triton_backward_matches_reference(shape):
    x = torch.randn(shape, requires_grad=True)
    dy = torch.randn(shape)
    (ours,) = torch.autograd.grad(scaled_softmax_triton(x, 0.25), x, dy)
    (expected,) = torch.autograd.grad(reference.scaled_softmax(x, 0.25), x, dy)
    assert rel_err(ours, expected) < 1e-5


def test_public_function_dispatches_to_triton_when_interpreting(monkeypatch):
    calls = []
    real = scaled_softmax_triton
    monkeypatch.setattr("labs.scaling.triton_softmax.scaled_softmax_triton", lambda x, s: calls.append(s) or real(x, s))
    x = torch.randn(2, 8)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    scaled_softmax(x, 2)
    assert calls == [2.0]
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    torch.testing.assert_close(scaled_softmax(x, 2), torch.softmax(2 * x, -1))
    assert calls == [2.0]  # the torch path did not call the kernel


@pytest.mark.parametrize(
    "x, scale, error, match",
    [
        ([1.0, 2.0], 1.0, TypeError, "x must be a torch.Tensor, got list"),
        (torch.ones(3, dtype=torch.int64), 1.0, TypeError, "scaled_softmax: x must have a floating dtype.*torch.int64"),
        (torch.tensor(1.0), 1.0, ValueError, r"non-empty last dimension, got shape \(\)"),
        (torch.ones(2, 0), 1.0, ValueError, r"got shape \(2, 0\)"),
        (torch.ones(3), float("nan"), ValueError, "scale must be a finite real number, got nan"),
        (torch.ones(3), "1", ValueError, "scale must be a finite real number, got '1'"),
        (torch.ones(3), True, ValueError, "scale must be a finite real number, got True"),
    ],
)
def test_bad_input(x, scale, error, match):
    with pytest.raises(error, match=match):
        scaled_softmax(x, scale)


def test_jacobian_matches_autograd():
    z = torch.randn(7, dtype=torch.float64)
    expected = torch.autograd.functional.jacobian(lambda t: torch.softmax(t, -1), z)
    torch.testing.assert_close(softmax_jacobian(torch.softmax(z, -1)), expected)


@pytest.mark.parametrize("law", ["normal", "uniform", "rademacher"])
def test_unit_variance_samples(law):
    x = scaling.unit_variance_samples((200_000,), distribution=law, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64
    assert abs(x.mean().item()) < 0.01 and abs(x.var().item() - 1) < 0.02


def test_unit_variance_samples_rejects_unknown_law_and_a_missing_generator():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="unit_variance_samples: distribution must be one of 'normal', 'uniform', "
                                         "'rademacher'; got 'cauchy'"):
        scaling.unit_variance_samples((3,), distribution="cauchy", generator=g)
    with pytest.raises(TypeError, match="unit_variance_samples: generator must be a torch.Generator .*got NoneType"):
        scaling.unit_variance_samples((3,), generator=None)


def test_attention_statistics_at_uniform_attention():
    n = 16
    stats = scaling.attention_statistics(torch.zeros(4, 8, dtype=torch.float64), torch.randn(n, 8, dtype=torch.float64), 1.0)
    assert stats["max_weight"] == pytest.approx(1 / n)
    assert stats["entropy"] == pytest.approx(math.log(n))
    assert stats["jacobian_norm"] == pytest.approx(math.sqrt(n - 1) / n)
    assert stats["jacobian_norm_median"] == pytest.approx(math.sqrt(n - 1) / n)
    assert stats["logit_std"] == 0


def test_retrieval_training_is_seeded_and_learns():
    run = lambda: train_retrieval(16, 0.25, steps=40, batch=32, seed=3)  # noqa: E731
    losses = run()
    assert losses == run()
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "rmsprop"}, "train_retrieval: optimizer must be one of 'sgd', 'adam'; got 'rmsprop'"),
        ({"d": 0}, "train_retrieval: d must be a positive int, got 0"),
        ({"steps": 2.5}, "train_retrieval: steps must be a positive int, got 2.5"),
        ({"scale": float("inf")}, "train_retrieval: scale must be a finite real number, got inf"),
        ({"lr": -0.1}, r"train_retrieval: lr must be a finite real number > 0, got -0.1"),
        ({"noise": -1.0}, r"train_retrieval: noise must be a finite real number >= 0, got -1.0"),
        ({"seed": -3}, r"train_retrieval: seed must be an int >= 0, got -3"),
    ],
)
def test_retrieval_rejects_bad_arguments(kwargs, message):
    args = {"d": 8, "scale": 1.0, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        train_retrieval(args.pop("d"), args.pop("scale"), **args)


def test_statistics_and_jacobian_reject_bad_shapes():
    with pytest.raises(ValueError, match="softmax_jacobian: p must have at least 1 dimensions, got shape \\(\\)"):
        softmax_jacobian(torch.tensor(0.5))
    with pytest.raises(TypeError, match="softmax_jacobian: p must be a torch.Tensor, got list"):
        softmax_jacobian([0.5, 0.5])
    with pytest.raises(TypeError, match="softmax_jacobian: p must have a floating dtype.*torch.int64"):
        softmax_jacobian(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="attention_statistics: k must have 2 dimensions, got shape \\(3,\\)"):
        scaling.attention_statistics(torch.zeros(2, 3), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="attention_statistics: scale must be a finite real number, got nan"):
        scaling.attention_statistics(torch.zeros(2, 3), torch.zeros(4, 3), float("nan"))
    with pytest.raises(ValueError, match="same d, got q \\(2, 3\\) and k \\(4, 5\\)"):
        scaling.attention_statistics(torch.zeros(2, 3), torch.zeros(4, 5), 1.0)
