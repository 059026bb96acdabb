import random

import numpy as np
import pytest
import torch

import labs
from labs._seed import last_seed


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


@pytest.mark.parametrize("bad", ["3", 1.5, True, None])
def test_seed_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="seed: n must be an int"):
        labs.seed(bad)


def test_seed_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\).*-1"):
        labs.seed(-1)
