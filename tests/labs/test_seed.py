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
