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
