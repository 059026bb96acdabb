"""The trained multi-query associative recall experiment (labs.recurrent.mqar)."""

import pytest
import torch

from labs.recurrent.mqar import MIXERS, MQARModel, mqar_accuracy, mqar_batch, state_floats, train_mqar


def test_batch_shapes_and_answers():
    g = torch.Generator().manual_seed(0)
    keys, values, queries, targets = mqar_batch(5, 6, 9, generator=g, n_keys=10, n_values=4)
    assert keys.shape == values.shape == (5, 6)
    assert queries.shape == targets.shape == (5, 9)
    for row in range(5):
        assert len(set(keys[row].tolist())) == 6  # distinct keys per sequence
        stored = dict(zip(keys[row].tolist(), values[row].tolist()))
        assert all(stored[q] == t for q, t in zip(queries[row].tolist(), targets[row].tolist()))
    assert int(keys.max()) < 10 and int(values.max()) < 4


def test_batch_is_a_function_of_the_generator():
    a = mqar_batch(4, 3, 5, generator=torch.Generator().manual_seed(1))
    b = mqar_batch(4, 3, 5, generator=torch.Generator().manual_seed(1))
    c = mqar_batch(4, 3, 5, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("mixer", MIXERS)
def test_model_shapes_and_decays(mixer):
    model = MQARModel(mixer, d_state=4, seeds=[0, 1])
    keys, values, queries, _ = (torch.stack([x, x]) for x in
                                mqar_batch(3, 5, 7, generator=torch.Generator().manual_seed(0)))
    assert model(keys, values, queries).shape == (2, 3, 7, 16)
    if mixer != "softmax":
        x = torch.randn(2, 3, 12, 64)
        log_decay = model.log_decay(x)
        assert log_decay.shape[:3] == (6, 2, 12)
        assert bool((log_decay <= 0).all())


def test_weights_come_from_the_seed_alone():
    torch.manual_seed(123)
    a = MQARModel("gla", d_state=4, seeds=5)
    torch.manual_seed(456)
    b = MQARModel("gla", d_state=4, seeds=5)
    c = MQARModel("gla", d_state=4, seeds=6)
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q), name
    assert not torch.equal(a.qk, c.qk)


def test_models_trained_side_by_side_are_the_single_seed_models():
    together, curves = train_mqar("selective", d_state=4, seed=[3, 4], steps=4, batch=4)
    alone, curve = train_mqar("selective", d_state=4, seed=4, steps=4, batch=4)
    assert curves[1] == pytest.approx(curve, abs=1e-6)
    torch.testing.assert_close(together.qk[1], alone.qk[0], rtol=1e-3, atol=1e-4)  # Adam scales up round-off
    assert isinstance(mqar_accuracy(alone, 4, seed=0), float)
    assert len(mqar_accuracy(together, 4, seed=0)) == 2


def test_softmax_learns_to_recall():
    model, curve = train_mqar("softmax", d_state=8, seed=0, steps=150, batch=16)
    chance = 1 / 16
    assert mqar_accuracy(model, 4, seed=1) > 0.6 > 5 * chance
    assert sum(curve[-20:]) / 20 > sum(curve[:20]) / 20 + 0.3


def test_state_floats():
    assert state_floats("softmax", 24, d_state=4, d_value=32, n_heads=2) == 2 * 24 * (4 + 32)
    assert state_floats("gla", 24, d_state=4, d_value=32, n_heads=2) == 2 * 4 * 32
    assert state_floats("linear", 10**6, d_state=4, d_value=32, n_heads=2) == 2 * 4 * 32


@pytest.mark.parametrize("call, match", [
    (lambda: mqar_batch(2, 0, 3, generator=torch.Generator()), "n_pairs"),
    (lambda: mqar_batch(2, 65, 3, generator=torch.Generator()), "n_pairs"),
    (lambda: mqar_batch(2, 3, 0, generator=torch.Generator()), "n_queries"),
    (lambda: mqar_batch(0, 3, 3, generator=torch.Generator()), "batch"),
    (lambda: MQARModel("rnn", d_state=4, seeds=0), "mixer"),
    (lambda: MQARModel("linear", d_state=0, seeds=0), "d_state"),
    (lambda: MQARModel("linear", d_state=4, seeds=-1), "seed"),
    (lambda: MQARModel("linear", d_state=4, seeds=[]), "seed"),
    (lambda: MQARModel("linear", d_state=4, seeds=0, d_model=63), "d_model"),
    (lambda: train_mqar("mamba", d_state=4, seed=0), "mixer"),
    (lambda: train_mqar("linear", d_state=4, seed=0, steps=0), "steps"),
    (lambda: train_mqar("linear", d_state=4, seed=0, lr=-1.0), "lr"),
    (lambda: train_mqar("linear", d_state=4, seed=0, max_pairs=65), "max_pairs"),
    (lambda: mqar_accuracy(MQARModel("linear", d_state=4, seeds=0), 0, seed=0), "n_pairs"),
    (lambda: state_floats("rnn", 4, d_state=4, d_value=4, n_heads=1), "mixer"),
    (lambda: state_floats("linear", 0, d_state=4, d_value=4, n_heads=1), "seq_len"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_types_are_refused():
    with pytest.raises(TypeError, match="generator"):
        mqar_batch(2, 3, 3, generator=0)
    with pytest.raises(TypeError, match="model"):
        mqar_accuracy(torch.nn.Linear(2, 2), 4, seed=0)
