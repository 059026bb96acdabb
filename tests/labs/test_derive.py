import numpy as np
import pytest
import sympy as sp
import torch

from labs.derive import DerivationError, assert_close, assert_equal, expectation, standard_moment

x, y = sp.symbols("x y")


def test_true_step_passes():
    assert_equal((x + 1) ** 2, x**2 + 2 * x + 1, step="square")
    assert_equal(sp.sin(x) ** 2 + sp.cos(x) ** 2, 1)


def test_false_step_prints_both_sides():
    with pytest.raises(DerivationError) as error:
        assert_equal((x + 1) ** 2, x**2 + 1, step="bad square")
    message = str(error.value)
    assert "bad square" in message
    assert "lhs = (x + 1)**2" in message and "rhs = x**2 + 1" in message
    assert "2*x" in message  # the simplified difference


def test_matrices():
    a = sp.Matrix([[x, 1], [0, x]])
    assert_equal(a * a, sp.Matrix([[x**2, 2 * x], [0, x**2]]))
    with pytest.raises(DerivationError, match="does not hold"):
        assert_equal(a, sp.eye(2))
    with pytest.raises(DerivationError, match="different shapes"):
        assert_equal(a, x)


def test_non_sympy_input_is_a_type_error():
    with pytest.raises(TypeError, match="rhs must be a SymPy expression"):
        assert_equal(x, object())


def test_show_displays_latex(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    assert_equal(x + x, 2 * x, show=True)
    assert shown and "2 x" in shown[0].data


def test_assert_close_accepts_numbers_arrays_tensors():
    assert_close(torch.tensor([1.0, 2.0], dtype=torch.float64), np.array([1.0, 2.0]))
    assert_close(0.1 + 0.2, 0.3, rtol=1e-12)
    with pytest.raises(DerivationError, match="largest \\|actual - expected\\| = 1.000e-03"):
        assert_close([1.0, 2.0], [1.0, 2.001], step="numbers")
    with pytest.raises(DerivationError, match="shapes differ"):
        assert_close([1.0], [1.0, 2.0])
    with pytest.raises(TypeError, match="actual must be a number"):
        assert_close("1", 1.0)


def test_expectation_uses_only_the_given_moments():
    assert expectation(x, [x]) == 0
    assert expectation(x**2 * y**2, [x, y]) == 1
    assert expectation(x * y + 3, [x, y]) == 3
    assert expectation(x**4, [x]) == sp.Symbol("mu_4")
    with pytest.raises(TypeError, match="variables must be"):
        expectation(x, ["x"])
    with pytest.raises(ValueError, match="k must be a non-negative int, got -1"):
        standard_moment(-1)


from labs.derive import (  # noqa: E402
    assert_at_least, assert_at_most, assert_between, assert_greater, assert_less, assert_true, judge,
)


def test_inequalities_pass_when_they_hold():
    assert_less(1.0, 2.0, step="scalar")
    assert_at_most(np.array([1.0, 2.0]), 2.0)
    assert_greater(torch.tensor([3.0, 4.0]), torch.tensor([2.0, 3.9]))
    assert_at_least(2, 2)
    assert_between(np.array([0.1, 0.9]), 0.0, 1.0)
    assert_true(True, step="a fact")


@pytest.mark.parametrize(
    "check, args, pattern",
    [
        (assert_less, (2.0, 2.0), r"step 'lt' does not hold: expected actual < bound\n  actual = 2.0, bound = 2.0"),
        (assert_at_most, ([1.0, 3.0], 2.0), r"(?s)1 of 2 entries fail.*actual = 3.0, bound = 2.0 at index \(1,\)"),
        (assert_greater, (float("nan"), 0.0), r"actual = nan"),
        (assert_at_least, (1.0, 1.5), r"expected actual >= bound"),
        (assert_between, (1.5, 0.0, 1.0), r"expected actual <= high"),
    ],
)
def test_inequalities_fail_with_both_sides(check, args, pattern):
    with pytest.raises(DerivationError, match=pattern):
        check(*args, step="lt")


def test_assert_true_fails_with_its_detail():
    with pytest.raises(DerivationError, match="step 'sets' does not hold: found {1}"):
        assert_true(False, step="sets", detail="found {1}")
    with pytest.raises(TypeError, match="condition must be a bool"):
        assert_true(1, step="x")


def test_between_checks_its_range():
    with pytest.raises(ValueError, match="low must be <= high"):
        assert_between(0.5, 1.0, 0.0)


def test_judge_logs_and_reports(monkeypatch, tmp_path, capsys):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("LABS_CHECK_LOG", str(log))
    assert_close(1.0, 1.0, step="ok step")
    with pytest.raises(DerivationError):
        assert_less(2.0, 1.0, step="bad step")
    monkeypatch.setenv("LABS_CHECKS", "report")
    assert judge(False, "reported", "true", "it failed") is False
    assert "CHECK FAILED (true): it failed" in capsys.readouterr().out
    import json

    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["step"], r["ok"]) for r in rows] == [("ok step", True), ("bad step", False), ("reported", False)]
    assert "actual = 2.0" in rows[1]["message"]
