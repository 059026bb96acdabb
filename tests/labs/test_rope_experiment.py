"""The RoPE chapter's experiment: the retrieval task, the stacked models, training and the frequency swap."""

import pytest
import torch

from labs.rope import rope_frequencies
from labs.rope.experiment import (
    ENCODINGS,
    StackedDecoder,
    TaskConfig,
    evaluate,
    fine_tune,
    layout,
    query_distances,
    retrieval_batch,
    rope_for,
    train_retrieval,
)

SMALL = dict(d_model=16, n_heads=2, n_layers=2)
CONFIG = TaskConfig(keys=24, values=5, train_len=16)


def test_retrieval_targets_follow_their_keys():
    tokens, targets, distance = retrieval_batch(CONFIG, (3, 2), 32, torch.Generator().manual_seed(0))
    n_pairs, n_queries = layout(32)
    assert tokens.shape == targets.shape == (3, 2, 32) and distance.shape == (3, 2, n_queries)
    assert 2 * n_pairs + n_queries == 32
    assert (targets[..., : 2 * n_pairs] == -100).all()
    keys = tokens[..., : 2 * n_pairs : 2]
    assert (keys < CONFIG.keys).all() and (tokens[..., 1 : 2 * n_pairs : 2] >= CONFIG.keys).all()
    assert all(len(set(row.tolist())) == n_pairs for row in keys.reshape(-1, n_pairs))  # distinct keys
    flat_tokens, flat_targets, flat_distance = tokens.reshape(6, 32), targets.reshape(6, 32), distance.reshape(6, -1)
    for row in range(6):
        for i in range(n_queries):
            query = 2 * n_pairs + i
            key = query - flat_distance[row, i]
            assert flat_tokens[row, key] == flat_tokens[row, query]
            assert flat_tokens[row, key + 1] == flat_targets[row, query]
    assert distance.max() > 16  # answers lie beyond the training length when evaluating longer


@pytest.mark.parametrize("length", [12, 0, 72])
def test_bad_lengths_are_refused(length):
    with pytest.raises(ValueError, match="retrieval_batch: length must be"):
        retrieval_batch(CONFIG, (1,), length, torch.Generator())


def test_every_member_runs_beyond_its_training_length():
    model = StackedDecoder([(e, 0) for e in ENCODINGS], CONFIG.vocab, **SMALL)
    logits = model(torch.randint(0, CONFIG.vocab, (4, 2, 48)))
    assert logits.shape == (4, 2, 48, CONFIG.vocab) and torch.isfinite(logits).all()


def test_members_are_causal_and_independent():
    members = [("rope", 0), ("alibi", 1)]
    model = StackedDecoder(members, CONFIG.vocab, **SMALL).eval()
    tokens = torch.randint(0, CONFIG.vocab, (2, 1, 12))
    changed = tokens.clone()
    changed[:, 0, 8:] = (changed[:, 0, 8:] + 1) % CONFIG.vocab
    torch.testing.assert_close(model(tokens)[:, 0, :8], model(changed)[:, 0, :8])
    other = tokens.clone()
    other[1] = (other[1] + 1) % CONFIG.vocab  # member 1's input must not move member 0's output
    torch.testing.assert_close(model(tokens)[0], model(other)[0])
    alone = model.select([1])
    torch.testing.assert_close(alone(tokens[1:]), model(tokens)[1:])


def test_dropping_every_pair_leaves_uniform_attention():
    model = StackedDecoder([("rope", 0), ("nope", 0)], CONFIG.vocab, **SMALL)
    tokens = torch.randint(0, CONFIG.vocab, (1, 1, 10)).expand(2, -1, -1)
    # dropping every pair removes all query-key information: uniform attention in both members
    attention = []
    model(tokens, drop_pairs=range(SMALL["d_model"] // SMALL["n_heads"] // 2), attention=attention)
    uniform = torch.tril(torch.ones(10, 10)) / torch.arange(1, 11)[:, None]
    torch.testing.assert_close(attention[0], uniform.expand_as(attention[0]))


def test_training_is_seeded_per_member_and_learns():
    run = lambda members: train_retrieval(members, CONFIG, steps=60, batch=16, lr=1e-2, **SMALL)  # noqa: E731
    (model, losses), (_, again), (_, other) = run([("rope", 1), ("alibi", 2)]), run([("rope", 1)]), run([("rope", 3)])
    assert losses.shape == (60, 2)
    torch.testing.assert_close(losses[:, 0], again[:, 0])  # a member does not depend on its neighbours
    assert not torch.equal(losses[:, 0], other[:, 0])
    assert (losses[-10:].mean(0) < 0.9 * losses[:10].mean(0)).all()
    accuracy, correct = evaluate(model, CONFIG, 32, seed=3)
    assert accuracy.shape == (2,) and correct.shape == (2, 64, layout(32)[1])
    torch.testing.assert_close(evaluate(model, CONFIG, 32, seed=3)[0], accuracy)
    assert query_distances(CONFIG, 32, seed=3).shape == correct.shape[1:]


def test_the_experiment_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    model, _ = train_retrieval([("rope", 5), ("sinusoidal", 5)], CONFIG, steps=2, batch=4, **SMALL)
    evaluate(model, CONFIG, 16, seed=5)
    fine_tune(model.select([0]), "yarn", 2.0, CONFIG, steps=1, batch=2)
    assert torch.equal(torch.get_rng_state(), before)


def test_the_initial_weights_come_from_the_seed_alone():
    first, _ = train_retrieval([("rope", 4)], CONFIG, steps=0, **SMALL)
    torch.rand(100)  # moving the global RNG must not change the model
    second, _ = train_retrieval([("rope", 4)], CONFIG, steps=0, **SMALL)
    third, _ = train_retrieval([("rope", 5)], CONFIG, steps=0, **SMALL)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), third.parameters()))


def test_rope_for_uses_the_method_and_factor():
    inv_freq, attention = rope_for("yarn", 16, 10000.0, 4.0, 32, beta_fast=2.0, beta_slow=0.5)
    expected, expected_attention = rope_frequencies(16, scaling="yarn", factor=4.0, original_max_position=32,
                                                    beta_fast=2.0, beta_slow=0.5)
    torch.testing.assert_close(inv_freq, expected.float())
    assert attention == expected_attention
    torch.testing.assert_close(rope_for(None, 16, 10000.0, 4.0, 32)[0], rope_frequencies(16)[0].float())
    torch.testing.assert_close(rope_for("linear", 16, 10000.0, 1.0, 32)[0], rope_frequencies(16)[0].float())


def test_fine_tune_copies_and_rejects_non_rope():
    model = StackedDecoder([("rope", 0)], CONFIG.vocab, **SMALL)
    before = [p.clone() for p in model.parameters()]
    tuned, losses = fine_tune(model, "linear", 2.0, CONFIG, steps=2, batch=4)
    assert losses.shape == (2, 1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, tuned.parameters()))
    with pytest.raises(ValueError, match="only RoPE members.*'alibi'"):
        fine_tune(StackedDecoder([("alibi", 0)], CONFIG.vocab, **SMALL), "linear", 2.0, CONFIG)
    with pytest.raises(ValueError, match="encoding must be one of.*got 'learned'"):
        StackedDecoder([("learned", 0)], CONFIG.vocab)
    with pytest.raises(ValueError, match="train_retrieval: seed must be an int >= 0, got -1"):
        train_retrieval([("rope", -1)], CONFIG, steps=1)
    with pytest.raises(ValueError, match="d_model / n_heads must be an even int"):
        StackedDecoder([("rope", 0)], CONFIG.vocab, d_model=12, n_heads=4)
