import random

import numpy as np
import pytest
import torch

import labs
from labs._seed import derive_seed, last_seed


def draw():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_same_seed_same_numbers():
    labs.seed(7)
    first = draw()
    labs.seed(7)
    assert draw() == first
    labs.seed(8)
    assert draw() != first
    assert last_seed() == 8


def test_seed_without_argument_reads_labs_seed(monkeypatch):
    monkeypatch.setenv("LABS_SEED", "5")
    assert labs.seed() == 5 and last_seed() == 5
    first = draw()
    monkeypatch.delenv("LABS_SEED")
    assert labs.seed() == 0
    assert draw() != first


@pytest.mark.parametrize("raw", ["x", "1.5", "-3"])
def test_bad_labs_seed_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("LABS_SEED", raw)
    with pytest.raises(ValueError, match=f"LABS_SEED must be .*{raw}"):
        labs.book_seed()


@pytest.mark.parametrize("bad", ["3", 1.5, True])
def test_seed_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="seed: n must be an int"):
        labs.seed(bad)


def test_seed_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\).*-1"):
        labs.seed(-1)


def test_generators_follow_the_book_seed_and_the_stream(monkeypatch):
    monkeypatch.delenv("LABS_SEED", raising=False)
    a = torch.rand(4, generator=labs.generator("data"))
    assert torch.equal(a, torch.rand(4, generator=labs.generator("data")))
    assert not torch.equal(a, torch.rand(4, generator=labs.generator("init")))
    assert not torch.equal(torch.rand(4, generator=labs.generator(1)), torch.rand(4, generator=labs.generator("1")))
    monkeypatch.setenv("LABS_SEED", "1")
    assert not torch.equal(a, torch.rand(4, generator=labs.generator("data")))
    assert labs.numpy_generator("data").random() != labs.numpy_generator("init").random()


def test_generators_leave_global_state_alone():
    labs.seed(3)
    expected = draw()
    labs.seed(3)
    labs.generator("x"), labs.numpy_generator("x"), labs.seeds(3)
    assert draw() == expected


def test_seeds_are_distinct_and_move_with_labs_seed(monkeypatch):
    monkeypatch.delenv("LABS_SEED", raising=False)
    first = labs.seeds(5)
    assert len(set(first)) == 5 and all(0 <= s < 2**31 for s in first)
    assert labs.seeds(3) == first[:3]
    monkeypatch.setenv("LABS_SEED", "2")
    assert set(labs.seeds(5)).isdisjoint(first)


def test_stream_and_count_are_checked():
    with pytest.raises(TypeError, match="derive_seed: stream must be a str or an int, got float"):
        derive_seed(1.5)
    with pytest.raises(ValueError, match="seeds: n must be a positive int, got 0"):
        labs.seeds(0)


def test_seed_generator_depends_on_seed_and_stream_only(monkeypatch):
    from labs._seed import seed_generator

    a = torch.rand(3, generator=seed_generator("f", 4, "init"))
    monkeypatch.setenv("LABS_SEED", "9")  # the book seed does not reach a library function's own seed
    assert torch.equal(a, torch.rand(3, generator=seed_generator("f", 4, "init")))
    assert not torch.equal(a, torch.rand(3, generator=seed_generator("f", 4, "data")))
    with pytest.raises(ValueError, match=r"f: seed must be an int >= 0, got -1"):
        seed_generator("f", -1, "init")
    with pytest.raises(ValueError, match=r"f: seed must be an int < 2\*\*32, got 4294967296"):
        seed_generator("f", 2**32, "init")


def test_global_rng_from_builds_layers_from_the_generator_and_restores_state():
    from labs._seed import global_rng_from

    labs.seed(1)
    expected = draw()
    labs.seed(1)
    with global_rng_from(torch.Generator().manual_seed(5)):
        w1 = torch.nn.Linear(3, 2).weight.detach().clone()
    assert draw() == expected
    with global_rng_from(torch.Generator().manual_seed(5)):
        assert torch.equal(w1, torch.nn.Linear(3, 2).weight)
    with pytest.raises(TypeError, match="generator must be a CPU torch.Generator"):
        with global_rng_from(5):
            pass
