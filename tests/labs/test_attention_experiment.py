"""The recall experiment's data and models."""

import pytest
import torch

from labs.attention.experiment import ATTENTION_KINDS, RecallModel, query_entropy, recall_batch, train_recall


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
    assert RecallModel(kind)(keys, values, query).shape == (4, 16)


def test_softmax_model_learns_above_chance():
    _, accuracy = train_recall("softmax", steps=60, batch=32, max_pairs=4)
    assert sum(accuracy[-10:]) / 10 > 0.3  # chance is 1/16


def test_bad_experiment_arguments():
    with pytest.raises(ValueError, match=r"RecallModel: kind must be one of"):
        RecallModel("rnn")
    with pytest.raises(ValueError, match=r"recall_batch: n_pairs must be in \[1, 64\], got 65"):
        recall_batch(2, 65)
    with pytest.raises(ValueError, match=r"query_entropy: only 'softmax' and 'linear'"):
        query_entropy(RecallModel("flash"), 4)
