import numpy as np
import pytest
import torch

import labs
from labs.claims import SeedTable, claim_between, claim_greater, claim_less, over_seeds, t_quantile_975
from labs.derive import DerivationError


def table(a, b):
    return SeedTable([10, 11, 12], {"a": a, "b": b})


def test_seed_table_statistics():
    t = SeedTable([1, 2, 3, 4], {"x": [1.0, 2.0, 3.0, 4.0]})
    assert t.mean("x") == 2.5
    assert t.std("x") == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    lo, hi = t.interval("x")
    assert hi - 2.5 == pytest.approx(3.182 * t.std("x") / 2)
    assert 2.5 - lo == pytest.approx(hi - 2.5)
    assert "seed 1" in t.summary() and "95% interval" in t.summary()


def test_seed_table_rejects_ragged_metrics():
    with pytest.raises(ValueError, match="metric 'x' must have one value per seed \\(3\\), got shape \\(2,\\)"):
        SeedTable([1, 2, 3], {"x": [1.0, 2.0]})
    with pytest.raises(KeyError, match="no metric 'y'"):
        SeedTable([1], {"x": [1.0]})["y"]


def test_over_seeds_uses_the_book_seeds_and_each_seed(monkeypatch):
    monkeypatch.delenv("LABS_SEED", raising=False)
    seen = []

    def run(seed):
        seen.append(seed)
        return {"draw": torch.rand(1, generator=torch.Generator().manual_seed(seed)).item(), "seed": seed}

    t = over_seeds(run, n_seeds=3)
    assert seen == labs.seeds(3) == t.seeds
    assert list(t["seed"]) == seen
    assert over_seeds(lambda s: float(s), seeds=[4, 5, 6])["value"].tolist() == [4.0, 5.0, 6.0]


def test_over_seeds_rejects_inconsistent_runs():
    with pytest.raises(ValueError, match="returned metrics"):
        over_seeds(lambda s: {"a": 1.0} if s == 1 else {"b": 1.0}, seeds=[1, 2, 3])
    with pytest.raises(TypeError, match="must return a number or a dict"):
        over_seeds(lambda s: "high", seeds=[1, 2, 3])


def holds(capsys) -> bool:
    """Whether the claim just judged printed a HOLDS verdict (claims return None: a cell ending in one shows nothing)."""
    return "verdict: HOLDS" in capsys.readouterr().out


def test_claim_every_seed_holds_and_prints_the_table(capsys):
    assert claim_greater(table([3.0, 4.0, 5.0], [1.0, 2.0, 3.0]), "a", "b", claim="a beats b") is None
    out = capsys.readouterr().out
    assert "claim: a beats b" in out and "verdict: HOLDS (holds in 3 of 3 seeds)" in out
    claim_less(table([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]), "a", 0.5, claim="a stays below a half")
    assert holds(capsys)


def test_claim_fails_when_one_seed_breaks_it(capsys):
    with pytest.raises(DerivationError, match="FAILS \\(holds in 2 of 3 seeds\\)"):
        claim_greater(table([3.0, 4.0, 1.0], [1.0, 2.0, 3.0]), "a", "b", claim="a beats b")
    assert "NO" in capsys.readouterr().out


def test_claim_margin_can_fail_a_small_gap():
    with pytest.raises(DerivationError, match="by more than 0.5"):
        claim_greater(table([1.1, 2.1, 3.1], [1.0, 2.0, 3.0]), "a", "b", margin=0.5, claim="a beats b clearly")


def test_intervals_rule_needs_separated_intervals(capsys):
    # a wins in every seed, but the spread is large: the intervals overlap
    noisy = table([2.0, 10.0, 20.0], [1.0, 9.0, 19.0])
    claim_greater(noisy, "a", "b", claim="paired win")
    assert holds(capsys)
    with pytest.raises(DerivationError, match="intervals overlap"):
        claim_greater(noisy, "a", "b", rule="intervals", claim="clear win")
    capsys.readouterr()
    claim_greater(table([10.0, 10.1, 9.9], [1.0, 1.1, 0.9]), "a", "b", rule="intervals", claim="clear win")
    assert holds(capsys)


def test_claim_between(capsys):
    assert claim_between(table([0.4, 0.5, 0.6], [0, 0, 0]), "a", 0.0, 1.0, claim="a is a probability") is None
    assert holds(capsys)
    with pytest.raises(DerivationError, match="in range in 2 of 3 seeds"):
        claim_between(table([0.4, 0.5, 1.6], [0, 0, 0]), "a", 0.0, 1.0, claim="a is a probability")


def test_claims_check_their_arguments():
    t = table([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="at least 3 seeds, got 2"):
        claim_greater(SeedTable([1, 2], {"a": [1, 2]}), "a", 0.0, claim="x")
    with pytest.raises(ValueError, match="rule must be one of 'every_seed', 'intervals'; got 'mean'"):
        claim_greater(t, "a", "b", rule="mean", claim="x")
    with pytest.raises(ValueError, match="claim must say in words"):
        claim_greater(t, "a", "b", claim="")
    with pytest.raises(TypeError, match="table must be a SeedTable"):
        claim_greater({"a": [1]}, "a", "b", claim="x")
    with pytest.raises(TypeError, match="each side must be a metric name or a finite number"):
        claim_greater(t, "a", float("nan"), claim="x")
    with pytest.raises(ValueError, match="dof must be a positive int"):
        t_quantile_975(0)
