"""The recall experiment's data and models."""

import pytest
import torch

from labs.attention.experiment import (
    ATTENTION_KINDS,
    RecallModel,
    flash_live_fraction,
    query_entropy,
    recall_accuracy,
    recall_batch,
    recall_experiment,
    train_recall,
)

# These tests train and measure models; the kernels inside are held to their references elsewhere.
pytestmark = pytest.mark.usefixtures("torch_kernels")


def test_recall_batch_targets_are_the_queried_keys_values():
    keys, values, query, target = recall_batch(32, 10, generator=torch.Generator().manual_seed(0))
    assert keys.shape == values.shape == (32, 10)
    assert all(len(set(row.tolist())) == 10 for row in keys)  # distinct keys in a sequence
    for b in range(32):
        position = (keys[b] == query[b]).nonzero().item()
        assert values[b, position] == target[b]


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_every_model_maps_a_batch_to_value_logits(kind):
    keys, values, query, _ = recall_batch(4, 9, generator=torch.Generator().manual_seed(1))
    assert RecallModel(kind, seed=0)(keys, values, query).shape == (4, 16)


@pytest.mark.parametrize("kind", ["softmax", "flash"])
def test_a_model_depends_on_its_seed_alone(kind):
    torch.manual_seed(1)
    first = RecallModel(kind, seed=5).state_dict()
    torch.manual_seed(2)  # another global RNG state must not change the weights
    second = RecallModel(kind, seed=5).state_dict()
    other = RecallModel(kind, seed=6).state_dict()
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, rtol=0, atol=0)
    assert not torch.equal(first["readout.weight"], other["readout.weight"])
    assert not torch.equal(first["readout.bias"], other["readout.bias"])


def test_training_and_evaluation_depend_on_their_seeds_alone():
    torch.manual_seed(1)
    model, accuracy = train_recall("linear", steps=5, batch=8, max_pairs=4, seed=3)
    torch.manual_seed(2)
    again, accuracy_again = train_recall("linear", steps=5, batch=8, max_pairs=4, seed=3)
    assert accuracy == accuracy_again
    assert recall_accuracy(model, 4, seed=1) == recall_accuracy(again, 4, seed=1)
    torch.testing.assert_close(query_entropy(model, 4, seed=2), query_entropy(again, 4, seed=2), rtol=0, atol=0)
    _, other = train_recall("linear", steps=5, batch=8, max_pairs=4, seed=4)
    assert other != accuracy


def test_softmax_model_learns_above_chance():
    _, accuracy = train_recall("softmax", steps=60, batch=32, max_pairs=4, seed=0)
    assert sum(accuracy[-10:]) / 10 > 0.3  # chance is 1/16


def test_bad_experiment_arguments():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"RecallModel: kind must be one of 'softmax', .*; got 'rnn'"):
        RecallModel("rnn", seed=0)
    with pytest.raises(ValueError, match=r"RecallModel: seed must be an int >= 0, got -1"):
        RecallModel("softmax", seed=-1)
    with pytest.raises(ValueError, match=r"recall_batch: n_pairs must be in \[1, 64\], got 65"):
        recall_batch(2, 65, generator=g)
    with pytest.raises(TypeError, match=r"recall_batch: generator must be a torch.Generator .*got NoneType"):
        recall_batch(2, 4, generator=None)
    with pytest.raises(ValueError, match=r"query_entropy: only 'softmax' and 'linear'"):
        query_entropy(RecallModel("flash", seed=0), 4, seed=0)
    with pytest.raises(ValueError, match=r"train_recall: steps must be a positive int, got 0"):
        train_recall("softmax", steps=0, seed=0)
    with pytest.raises(ValueError, match=r"train_recall: max_pairs must be an int >= 2, got 1"):
        train_recall("softmax", max_pairs=1, seed=0)
    with pytest.raises(ValueError, match=r"train_recall: lr must be a finite real number > 0, got 0.0"):
        train_recall("softmax", lr=0.0, seed=0)
    with pytest.raises(ValueError, match=r"recall_accuracy: seed must be an int >= 0, got 1.5"):
        recall_accuracy(RecallModel("softmax", seed=0), 4, seed=1.5)


def test_flash_live_fraction_is_a_fraction_and_sees_a_dead_route():
    model = RecallModel("flash", seed=0)
    live = flash_live_fraction(model, 4, seed=0)
    assert 0.0 <= live <= 1.0
    assert live > 0.5  # at initialisation q.k of silu features is mostly positive
    with torch.no_grad():  # every query score negative: q = -1 and k = +1 in every coordinate
        model.mixer.gamma[:2].zero_()
        model.mixer.beta[0].fill_(-1.0)
        model.mixer.beta[1].fill_(1.0)
    assert flash_live_fraction(model, 4, seed=0) == 0.0
    with torch.no_grad():  # and every score positive: q = k = +1
        model.mixer.beta[0].fill_(1.0)
    assert flash_live_fraction(model, 4, seed=0) == 1.0


def test_recall_experiment_reports_every_metric():
    metrics, curves = recall_experiment(0, steps={kind: 200 for kind in ATTENTION_KINDS}, pair_counts=(2, 9),
                                        kinds=("linear", "flash"))
    assert set(curves) == {"linear", "flash"} and len(curves["flash"]) == 200
    assert {"linear n=2", "linear n=9", "linear gain", "linear entropy", "flash live", "flash n=9"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("linear n=2", "flash n=9", "flash live"))


def test_bad_flash_and_experiment_arguments():
    with pytest.raises(ValueError, match=r"flash_live_fraction: model must be a RecallModel of kind 'flash'"):
        flash_live_fraction(RecallModel("softmax", seed=0), 4, seed=0)
    with pytest.raises(ValueError, match=r"flash_live_fraction: with n_pairs=8 the query starts a chunk of 8"):
        flash_live_fraction(RecallModel("flash", seed=0), 8, seed=0)
    with pytest.raises(ValueError, match=r"recall_experiment: kinds must be one of"):
        recall_experiment(0, kinds=("rnn",))
    with pytest.raises(ValueError, match=r"recall_experiment: steps must be an int >= 200"):
        recall_experiment(0, steps={"linear": 100}, kinds=("linear",))
