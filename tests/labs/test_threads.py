import pytest
import torch

import labs


def test_threads_sets_and_restores():
    before = torch.get_num_threads()
    with labs.threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_threads_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with labs.threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_threads_as_a_decorator():
    @labs.threads(1)
    def inside():
        return torch.get_num_threads()

    before = torch.get_num_threads()
    assert inside() == 1 and inside() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.0, True])
def test_threads_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="threads: n must be a positive int"):
        with labs.threads(bad):
            pass
