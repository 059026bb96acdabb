"""Empirical claims that could fail: results over several seeds, and comparisons judged per seed.

A chapter runs its experiment once per seed (``over_seeds``), or batches the
seeds through one stacked model and builds a ``SeedTable`` from the per-seed
arrays itself. A claim in the prose is then checked with ``claim_greater``,
``claim_less`` or ``claim_between``, which print the per-seed table they judged
and end in ``labs.derive.judge`` (so a failing claim raises, is logged, and is
listed by ``make seeds``).

Two rules for a comparison:

* ``"every_seed"``: the relation holds in every seed (paired by seed);
* ``"intervals"``: the 95% confidence intervals of the two means do not overlap
  (Student's t over seeds), in the claimed direction.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from ._seed import seeds as book_seeds
from .book import progress
from .derive import judge

MIN_SEEDS = 3
RULES = ("every_seed", "intervals")

# Two-sided 95% quantiles of Student's t, by degrees of freedom (1.96 beyond 30).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
         26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}


def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom (the 95% two-sided factor)."""
    if isinstance(dof, bool) or not isinstance(dof, numbers.Integral) or dof < 1:
        raise ValueError(f"t_quantile_975: dof must be a positive int, got {dof!r}")
    return _T975.get(int(dof), 1.96)


class SeedTable:
    """Named metrics measured once per seed: ``values[name][i]`` belongs to ``seeds[i]``."""

    def __init__(self, seeds: Iterable[int], metrics: Mapping[str, Iterable[float]]):
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("SeedTable: seeds must be a non-empty list of ints, got []")
        if not isinstance(metrics, Mapping) or not metrics:
            raise ValueError(f"SeedTable: metrics must be a non-empty dict name -> per-seed values, got {metrics!r}")
        self.values: dict[str, np.ndarray] = {}
        for name, column in metrics.items():
            array = np.asarray(_as_numpy(column), dtype=np.float64).reshape(-1)
            if array.shape != (len(self.seeds),):
                raise ValueError(
                    f"SeedTable: metric {name!r} must have one value per seed ({len(self.seeds)}), "
                    f"got shape {array.shape}"
                )
            self.values[str(name)] = array

    @property
    def names(self) -> list[str]:
        return list(self.values)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.values:
            raise KeyError(f"SeedTable: no metric {name!r}; it has {', '.join(map(repr, self.values))}")
        return self.values[name]

    def mean(self, name: str) -> float:
        return float(self[name].mean())

    def std(self, name: str) -> float:
        """The sample standard deviation over seeds (0 with one seed)."""
        column = self[name]
        return float(column.std(ddof=1)) if len(column) > 1 else 0.0

    def interval(self, name: str) -> tuple[float, float]:
        """The 95% confidence interval of the mean over seeds (Student's t)."""
        n = len(self.seeds)
        if n < 2:
            return (self.mean(name), self.mean(name))
        half = t_quantile_975(n - 1) * self.std(name) / math.sqrt(n)
        return (self.mean(name) - half, self.mean(name) + half)

    def summary(self, names: Iterable[str] | None = None) -> str:
        """A text table: per-seed values, mean, standard deviation and 95% interval of each metric."""
        names = list(self.values) if names is None else list(names)
        width = max(12, *(len(n) for n in names))
        head = f"{'metric':<{width}} " + " ".join(f"{'seed ' + str(s):>12}" for s in self.seeds)
        head += f" {'mean':>10} {'std':>9} {'95% interval':>21}"
        lines = [head]
        for name in names:
            lo, hi = self.interval(name)
            lines.append(
                f"{name:<{width}} " + " ".join(f"{v:12.4g}" for v in self[name])
                + f" {self.mean(name):10.4g} {self.std(name):9.3g} [{lo:9.4g}, {hi:9.4g}]"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def _as_numpy(column):
    if hasattr(column, "detach"):
        return column.detach().cpu().double().numpy()
    return column


def over_seeds(run: Callable[[int], object], *, n_seeds: int = MIN_SEEDS, seeds: Iterable[int] | None = None,
               stream: str = "seeds", desc: str | None = None) -> SeedTable:
    """Call ``run(seed)`` once per seed and collect its metrics in a ``SeedTable``.

    ``run`` returns a number (stored as ``"value"``) or a dict name -> number. The
    seeds are ``labs.seeds(n_seeds, stream)`` (derived from ``LABS_SEED``) unless
    given. ``run`` must use its seed for every random draw and leave global RNG
    state alone.
    """
    if not callable(run):
        raise TypeError(f"over_seeds: run must be callable as run(seed), got {type(run).__name__}")
    chosen = book_seeds(n_seeds, stream) if seeds is None else [int(s) for s in seeds]
    rows: list[dict[str, float]] = []
    for s in progress(chosen, desc=desc or "seeds", leave=False):
        out = run(s)
        if isinstance(out, Mapping):
            rows.append({str(k): float(v) for k, v in out.items()})
        elif isinstance(out, numbers.Real) or (hasattr(out, "item") and np.ndim(out) == 0):
            rows.append({"value": float(out)})
        else:
            raise TypeError(f"over_seeds: run(seed) must return a number or a dict of numbers, got {type(out).__name__}")
        if rows[-1].keys() != rows[0].keys():
            raise ValueError(f"over_seeds: run returned metrics {sorted(rows[-1])} for seed {s}, "
                             f"but {sorted(rows[0])} for the first seed")
    return SeedTable(chosen, {name: [row[name] for row in rows] for name in rows[0]})


def _column(table: SeedTable, side: str, fn: str) -> tuple[str, np.ndarray]:
    if isinstance(side, str):
        return side, table[side]
    if isinstance(side, bool) or not isinstance(side, numbers.Real) or not math.isfinite(side):
        raise TypeError(f"{fn}: each side must be a metric name or a finite number, got {side!r}")
    return f"{side:g}", np.full(len(table.seeds), float(side))


def _check_table(fn: str, table) -> None:
    if not isinstance(table, SeedTable):
        raise TypeError(f"{fn}: table must be a SeedTable (from over_seeds), got {type(table).__name__}")
    if len(table.seeds) < MIN_SEEDS:
        raise ValueError(f"{fn}: a claim needs at least {MIN_SEEDS} seeds, got {len(table.seeds)}")


def _compare(fn: str, table: SeedTable, a, b, sign: int, margin: float, rule: str, claim: str) -> None:
    _check_table(fn, table)
    if rule not in RULES:
        raise ValueError(f"{fn}: rule must be one of {', '.join(map(repr, RULES))}; got {rule!r}")
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError(f"{fn}: claim must say in words what is claimed, got {claim!r}")
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not margin >= 0:
        raise ValueError(f"{fn}: margin must be a real number >= 0, got {margin!r}")
    name_a, col_a = _column(table, a, fn)
    name_b, col_b = _column(table, b, fn)
    relation = ">" if sign > 0 else "<"
    gap = sign * (col_a - col_b)  # > margin where the claim holds
    per_seed = gap > margin
    lines = [f"claim: {claim}", f"judged: {name_a} {relation} {name_b}"
             + (f" by more than {margin:g}" if margin else "") + f", rule {rule!r}"]
    width = max(10, len(name_a), len(name_b))
    lines.append(f"{'seed':>12} {name_a:>{width}} {name_b:>{width}} {'holds':>6}")
    for s, x, y, ok in zip(table.seeds, col_a, col_b, per_seed):
        lines.append(f"{s:>12} {x:>{width}.4g} {y:>{width}.4g} {'yes' if ok else 'NO':>6}")
    n = len(table.seeds)
    half = t_quantile_975(n - 1) / math.sqrt(n)
    ci_a = (col_a.mean() - half * col_a.std(ddof=1), col_a.mean() + half * col_a.std(ddof=1))
    ci_b = (col_b.mean() - half * col_b.std(ddof=1), col_b.mean() + half * col_b.std(ddof=1))
    lines.append(f"{'mean':>12} {col_a.mean():>{width}.4g} {col_b.mean():>{width}.4g}")
    lines.append(f"{'95% CI':>12} [{ci_a[0]:.4g}, {ci_a[1]:.4g}] vs [{ci_b[0]:.4g}, {ci_b[1]:.4g}]")
    if rule == "every_seed":
        ok = bool(per_seed.all())
        verdict = f"holds in {int(per_seed.sum())} of {n} seeds"
    else:
        separation = (ci_a[0] - ci_b[1]) if sign > 0 else (ci_b[0] - ci_a[1])
        ok = bool(separation > margin)
        verdict = f"intervals {'separate' if separation > 0 else 'overlap'} by {separation:.4g}"
    lines.append(f"verdict: {'HOLDS' if ok else 'FAILS'} ({verdict})")
    report = "\n".join(lines)
    print(report)
    judge(ok, claim, f"claim_{rule}", report)


def claim_greater(table: SeedTable, a, b, *, claim: str, margin: float = 0.0, rule: str = "every_seed") -> None:
    """Check that metric ``a`` exceeds ``b`` (a metric name or a number) by more than ``margin``."""
    _compare("claim_greater", table, a, b, +1, margin, rule, claim)


def claim_less(table: SeedTable, a, b, *, claim: str, margin: float = 0.0, rule: str = "every_seed") -> None:
    """Check that metric ``a`` is below ``b`` (a metric name or a number) by more than ``margin``."""
    _compare("claim_less", table, a, b, -1, margin, rule, claim)


def claim_between(table: SeedTable, a: str, low: float, high: float, *, claim: str) -> None:
    """Check that metric ``a`` lies in ``[low, high]`` in every seed."""
    _check_table("claim_between", table)
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError(f"claim_between: claim must say in words what is claimed, got {claim!r}")
    if not (isinstance(low, numbers.Real) and isinstance(high, numbers.Real) and low <= high):
        raise ValueError(f"claim_between: low and high must be numbers with low <= high, got {low!r}, {high!r}")
    name, col = _column(table, a, "claim_between")
    inside = (col >= low) & (col <= high)
    lines = [f"claim: {claim}", f"judged: {low:g} <= {name} <= {high:g} in every seed"]
    lines += [f"{s:>12} {x:>12.4g} {'yes' if ok else 'NO':>6}" for s, x, ok in zip(table.seeds, col, inside)]
    ok = bool(inside.all())
    lines.append(f"verdict: {'HOLDS' if ok else 'FAILS'} (in range in {int(inside.sum())} of {len(col)} seeds)")
    report = "\n".join(lines)
    print(report)
    judge(ok, claim, "claim_between", report)
