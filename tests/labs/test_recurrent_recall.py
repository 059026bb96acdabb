"""The hand-set associative-recall probe of the gated-recurrences chapter."""

import math

import pytest
import torch

from labs.recurrent.recall import MIXERS, read_out, recall_probe, recall_scores, recall_sequence, state_floats


def test_a_sequence_writes_unit_pairs_at_random_positions():
    seq = recall_sequence(5, 8, n_distractors=7, trials=4, seed=1)
    assert seq["keys"].shape == seq["values"].shape == (4, 12, 8)
    torch.testing.assert_close(seq["keys"].norm(dim=-1), torch.ones(4, 12, dtype=torch.float64))
    assert seq["is_pair"].sum(-1).tolist() == [5, 5, 5, 5]
    assert len({tuple(row.tolist()) for row in seq["is_pair"]}) > 1  # positions differ between trials
    again = recall_sequence(5, 8, n_distractors=7, trials=4, seed=1)
    assert torch.equal(again["keys"], seq["keys"]) and not torch.equal(recall_sequence(5, 8, seed=2)["keys"][:, :5],
                                                                        recall_sequence(5, 8, seed=1)["keys"][:, :5])


def test_orthogonal_keys_are_read_back_exactly_by_a_linear_state():
    dim = 6
    seq = {"keys": torch.eye(dim, dtype=torch.float64)[None], "values": torch.randn(1, dim, 3, dtype=torch.float64),
           "is_pair": torch.ones(1, dim, dtype=torch.bool), "n_pairs": dim}
    torch.testing.assert_close(read_out("linear", seq), seq["values"])
    assert recall_scores("linear", seq)["read_error"].item() < 1e-12


def test_a_decay_reads_back_older_pairs_weaker_by_gamma_per_step():
    dim, gamma = 4, 0.5
    seq = {"keys": torch.eye(dim, dtype=torch.float64)[None], "values": torch.eye(dim, dtype=torch.float64)[None],
           "is_pair": torch.ones(1, dim, dtype=torch.bool), "n_pairs": dim}
    scale = read_out("decay", seq, gamma=gamma)[0].diagonal()
    torch.testing.assert_close(scale, torch.tensor([gamma**3, gamma**2, gamma, 1.0], dtype=torch.float64))


def test_a_selective_step_ignores_distractors_that_a_fixed_decay_cannot():
    seq = recall_sequence(8, 64, n_distractors=400, trials=8, seed=0)
    clean = {**seq, "keys": seq["keys"][seq["is_pair"]].reshape(8, 8, 64),
             "values": seq["values"][seq["is_pair"]].reshape(8, 8, 64), "is_pair": torch.ones(8, 8, dtype=torch.bool)}
    torch.testing.assert_close(read_out("selective", seq, gamma=0.9), read_out("decay", clean, gamma=0.9))
    assert recall_scores("decay", seq, gamma=0.9)["accuracy"].mean() < recall_scores("selective", seq, gamma=0.9)[
        "accuracy"].mean()


def test_linear_crosstalk_matches_its_expected_size():
    n, d = 16, 64
    error = recall_probe("linear", n, d, trials=64, seed=3)["read_error"]
    assert abs(error - math.sqrt((n - 1) / d)) < 0.1 * math.sqrt((n - 1) / d)


def test_state_floats_count_a_kv_cache_against_a_fixed_state():
    assert state_floats("softmax", 1000, 64) == 2 * 1000 * 64
    assert all(state_floats(m, 1000, 64) == 64 * 64 for m in MIXERS if m != "softmax")


@pytest.mark.parametrize("call, message", [
    (lambda: recall_sequence(0, 8), "recall_sequence: n_pairs must be"),
    (lambda: recall_sequence(4, 8, n_distractors=-1), "recall_sequence: n_distractors must be"),
    (lambda: recall_sequence(4, 8, trials=1.5), "recall_sequence: trials must be"),
    (lambda: read_out("gru", recall_sequence(2, 4)), "read_out: mixer must be one of"),
    (lambda: read_out("decay", recall_sequence(2, 4), gamma=1.5), "read_out: gamma must be"),
    (lambda: read_out("decay", recall_sequence(2, 4), gamma=0.0), "read_out: gamma must be"),
    (lambda: recall_probe("linear", 4, 0), "recall_sequence: dim must be"),
    (lambda: state_floats("rnn", 10, 4), "state_floats: mixer must be one of"),
    (lambda: state_floats("linear", 0, 4), "state_floats: length must be"),
])
def test_bad_input_is_refused_with_the_argument_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_decay_mask_refuses_growth_and_non_tensors():
    from labs.recurrent import decay_mask

    with pytest.raises(ValueError, match=r"decay_mask: log_decay must be <= 0"):
        decay_mask(torch.tensor([-0.1, 0.2]))
    with pytest.raises((ValueError, TypeError), match="decay_mask: log_decay"):
        decay_mask([-0.1, -0.2])
    torch.testing.assert_close(decay_mask(torch.tensor([0.0, math.log(0.5)], dtype=torch.float64)),
                               torch.tensor([[1.0, 0.0], [0.5, 1.0]], dtype=torch.float64))
