"""The RoPE chapter's experiment: the task, the models, training and the frequency swap."""

import pytest
import torch

from labs.rope import rope_frequencies
from labs.rope.experiment import (
    ENCODINGS,
    TaskConfig,
    TinyDecoder,
    fine_tune,
    lookback_batch,
    per_position_accuracy,
    rope_for,
    train_lookback,
)

SMALL = dict(d_model=16, n_heads=2, n_layers=1)


@pytest.fixture(autouse=True)
def _torch_path(monkeypatch):
    """Train through the torch path: the kernel itself is tested (interpreted) in test_rope.py."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def test_lookback_targets():
    config = TaskConfig(vocab=5, offset=3, train_len=8)
    tokens, targets = lookback_batch(config, 4, 10, torch.Generator().manual_seed(0))
    assert (targets[:, :3] == -100).all()
    assert torch.equal(targets[:, 3:], tokens[:, :-3])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_model_runs_beyond_its_training_length(encoding):
    model = TinyDecoder(7, encoding, **SMALL)
    logits = model(torch.randint(0, 7, (2, 50)))
    assert logits.shape == (2, 50, 7) and torch.isfinite(logits).all()


def test_a_model_is_causal():
    model = TinyDecoder(7, "rope", **SMALL).eval()
    tokens = torch.randint(0, 7, (1, 12))
    changed = tokens.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 7
    torch.testing.assert_close(model(tokens)[0, :8], model(changed)[0, :8])


def test_training_is_seeded_and_learns():
    config = TaskConfig(vocab=8, offset=2, train_len=16)
    run = lambda seed: train_lookback("rope", config, steps=100, batch=32, lr=3e-3, seed=seed, **SMALL)  # noqa: E731
    (model, losses), (_, again), (_, other) = run(1), run(1), run(2)
    assert losses == again and losses != other
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])
    accuracy = per_position_accuracy(model, config, 16, seed=3)
    assert accuracy[:2].isnan().all() and (accuracy[2:] >= 0).all()
    torch.testing.assert_close(per_position_accuracy(model, config, 16, seed=3), accuracy, equal_nan=True)


def test_the_experiment_leaves_the_global_rng_alone():
    config = TaskConfig(vocab=8, offset=2, train_len=8)
    before = torch.get_rng_state()
    model, _ = train_lookback("sinusoidal", config, steps=2, batch=4, seed=5, **SMALL)
    per_position_accuracy(model, config, 8, seed=5)
    fine_tune(train_lookback("rope", config, steps=1, batch=2, seed=5, **SMALL)[0], "yarn", 2.0, config, steps=1,
              batch=2, seed=5)
    assert torch.equal(torch.get_rng_state(), before)


def test_the_initial_weights_come_from_the_seed_alone():
    config = TaskConfig(vocab=8, offset=2, train_len=8)
    first, _ = train_lookback("rope", config, steps=0, seed=4, **SMALL)
    torch.rand(100)  # moving the global RNG must not change the model
    second, _ = train_lookback("rope", config, steps=0, seed=4, **SMALL)
    third, _ = train_lookback("rope", config, steps=0, seed=5, **SMALL)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), third.parameters()))


def test_rope_for_uses_the_method_and_length():
    inv_freq, attention = rope_for("yarn", 16, 10000.0, 4.0, 32, 128)
    expected, expected_attention = rope_frequencies(16, scaling="yarn", factor=4.0, original_max_position=32)
    torch.testing.assert_close(inv_freq, expected.float())
    assert attention == expected_attention
    torch.testing.assert_close(rope_for(None, 16, 10000.0, 4.0, 32, 128)[0], rope_frequencies(16)[0].float())


def test_fine_tune_copies_and_rejects_non_rope():
    config = TaskConfig(vocab=8, offset=2, train_len=8)
    model = TinyDecoder(8, "rope", **SMALL)
    before = [p.clone() for p in model.parameters()]
    tuned = fine_tune(model, "linear", 2.0, config, steps=2, batch=4, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, tuned.parameters()))
    with pytest.raises(ValueError, match="only a RoPE model.*'alibi'"):
        fine_tune(TinyDecoder(8, "alibi", **SMALL), "linear", 2.0, config, seed=0)
    with pytest.raises(ValueError, match="encoding must be one of.*got 'learned'"):
        TinyDecoder(8, "learned")
    with pytest.raises(ValueError, match="train_lookback: seed must be an int >= 0, got -1"):
        train_lookback("rope", config, steps=1, seed=-1)
