"""Selectivity (Hewitt & Liang 2019): the true target's lens accuracy minus a control task's, at a matched step
budget, with two 95% intervals (docs/science.md "Control tasks").

* **Within a run** (sampling of the scored problems): Newcombe's hybrid score interval for a difference of two
  independent proportions (his method 10, built from the two Wilson intervals), on the counts pooled over seeds.
* **Across seeds** (run-to-run variation: adapter init, batch order, a control's random classes): the Student t
  interval of the mean of the per-seed differences, the true and control runs paired by seed (same data split
  and batch order). None with fewer than two seeds.

Pure numpy and the standard library: it computes on counts, whoever measured them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lazarus_nb.measure.evaluate import wilson

# Two-sided 95% Student t quantiles by degrees of freedom (scipy is not a dependency); beyond 30, the normal's.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom (the next tabulated df down,
    so the interval errs wide)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df > 30:
        return 1.96
    return _T95[max(d for d in _T95 if d <= df)]


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """95% interval of ``k1/n1 - k2/n2`` (Newcombe 1998, method 10: the Wilson limits of each proportion)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, lo), min(1.0, hi)


def t_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """95% Student t interval of the mean of ``values`` (per-seed differences; per-prompt probabilities); None with
    fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    d = np.asarray(values, dtype=float)
    half = t95(n - 1) * d.std(ddof=1) / math.sqrt(n)
    return float(d.mean() - half), float(d.mean() + half)


@dataclass(frozen=True)
class Selectivity:
    """True minus control at one step on one problem set, over the seeds both have."""

    step: int
    seeds: list[int]
    n: int  # problems scored per run
    true_accuracy: float  # mean over seeds
    control_accuracy: float
    within: tuple[float, float]  # Newcombe, counts pooled over seeds
    across: tuple[float, float] | None  # Student t over the paired seed differences

    @property
    def value(self) -> float:
        return self.true_accuracy - self.control_accuracy


def selectivity(step: int, n: int, true: dict[int, float], control: dict[int, float]) -> Selectivity | None:
    """Selectivity at ``step`` from seed -> accuracy (a fraction of ``n`` problems) of the true and the control
    runs; None when they share no seed."""
    seeds = sorted(set(true) & set(control))
    if not seeds:
        return None
    k_true = sum(round(true[s] * n) for s in seeds)
    k_control = sum(round(control[s] * n) for s in seeds)
    total = n * len(seeds)
    return Selectivity(step, seeds, n, k_true / total, k_control / total,
                       newcombe(k_true, total, k_control, total),
                       t_interval([true[s] - control[s] for s in seeds]))
