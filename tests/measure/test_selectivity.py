"""Selectivity and its intervals, against published and hand-computed values."""

from __future__ import annotations

import math

import pytest

from lazarus_nb.measure.selectivity import newcombe, selectivity, t95, t_interval


def test_newcombe_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, example (a): 56/70 - 48/80, method 10
    lo, hi = newcombe(56, 70, 48, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


def test_t_interval_by_hand():
    lo, hi = t_interval([0.1, 0.2, 0.3])  # mean 0.2, sd 0.1, t(2) = 4.303
    half = 4.303 * 0.1 / math.sqrt(3)
    assert (lo, hi) == pytest.approx((0.2 - half, 0.2 + half), abs=1e-12)
    assert t_interval([0.4]) is None  # one seed: no spread to measure
    assert t95(100) == 1.96 and t95(11) == t95(10)  # the table errs wide between its entries


def test_a_control_against_itself_has_selectivity_zero():
    acc = {0: 0.25, 1: 0.5, 2: 0.75}
    s = selectivity(40, 32, acc, acc)
    assert s.value == 0 and s.across == (0.0, 0.0)
    assert s.within[0] == pytest.approx(-s.within[1]) and s.within[0] < 0  # symmetric about 0, not degenerate


def test_selectivity_pools_counts_and_pairs_seeds():
    s = selectivity(100, 32, {0: 1.0, 1: 0.75, 5: 0.5}, {0: 0.25, 1: 0.25, 9: 0.0})
    assert s.seeds == [0, 1]  # only seeds both have
    assert (s.true_accuracy, s.control_accuracy) == (56 / 64, 16 / 64)
    assert s.within == newcombe(56, 64, 16, 64)
    assert s.across == pytest.approx(t_interval([0.75, 0.5]))
    assert selectivity(0, 32, {0: 1.0}, {1: 0.0}) is None
