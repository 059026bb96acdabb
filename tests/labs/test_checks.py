import numpy as np
import pytest

from labs._checks import whole_number


def test_whole_number_accepts_integers_at_or_above_the_minimum():
    assert whole_number("f", "n", 3) == 3
    assert whole_number("f", "n", np.int64(2), minimum=2) == 2


@pytest.mark.parametrize(
    "value, minimum, message",
    [
        (0, 1, "f: n must be a positive int, got 0"),
        (True, 1, "f: n must be a positive int, got True"),
        (2.0, 1, "f: n must be a positive int, got 2.0"),
        (1, 2, "f: n must be an int >= 2, got 1"),
    ],
)
def test_whole_number_names_the_function_and_argument(value, minimum, message):
    with pytest.raises(ValueError, match=message):
        whole_number("f", "n", value, minimum=minimum)


import torch  # noqa: E402

from labs._checks import FLOAT_DTYPES, choice, flag, float_tensor, positive, real_number  # noqa: E402


def test_real_number_accepts_finite_values_in_range():
    assert real_number("f", "x", 3) == 3.0
    assert real_number("f", "x", np.float32(0.5), low=0, high=1) == 0.5
    assert positive("f", "x", 1e-9) == 1e-9


@pytest.mark.parametrize(
    "value, bounds, message",
    [
        (float("nan"), {}, "f: x must be a finite real number, got nan"),
        (float("inf"), {"low": 0}, "f: x must be a finite real number >= 0, got inf"),
        (True, {}, "f: x must be a finite real number, got True"),
        ("1", {}, "f: x must be a finite real number, got '1'"),
        (0.0, {"low": 0, "low_open": True}, "f: x must be a finite real number > 0, got 0.0"),
        (1.0, {"low": 0, "high": 1, "high_open": True}, "f: x must be a finite real number >= 0 and < 1, got 1.0"),
    ],
)
def test_real_number_names_the_function_argument_and_bounds(value, bounds, message):
    with pytest.raises(ValueError, match=message):
        real_number("f", "x", value, **bounds)


def test_choice_and_flag():
    assert choice("f", "method", "chunk", ("chunk", "recurrent")) == "chunk"
    with pytest.raises(ValueError, match="f: method must be one of 'chunk', 'recurrent'; got 'fast'"):
        choice("f", "method", "fast", ("chunk", "recurrent"))
    assert flag("f", "causal", False) is False
    with pytest.raises(TypeError, match="f: causal must be True or False, got int"):
        flag("f", "causal", 1)


def test_float_tensor():
    x = torch.zeros(2, 3)
    assert float_tensor("f", "x", x, ndim=2) is x
    assert torch.float64 in FLOAT_DTYPES and torch.int64 not in FLOAT_DTYPES
    with pytest.raises(TypeError, match="f: x must be a torch.Tensor, got list"):
        float_tensor("f", "x", [1.0])
    with pytest.raises(TypeError, match="f: x must have a floating dtype.*got torch.int64"):
        float_tensor("f", "x", torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"f: x must have 3 dimensions, got shape \(2, 3\)"):
        float_tensor("f", "x", x, ndim=3)
    with pytest.raises(ValueError, match=r"f: x must have at least 3 dimensions, got shape \(2, 3\)"):
        float_tensor("f", "x", x, min_ndim=3)


def test_generator_check_names_the_argument():
    from labs._checks import generator

    g = torch.Generator()
    assert generator("f", "gen", g) is g
    with pytest.raises(TypeError, match=r"f: gen must be a torch.Generator \(e.g. labs.generator.*got int"):
        generator("f", "gen", 0)
