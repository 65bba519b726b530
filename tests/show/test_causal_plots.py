"""The ablation and steering figures draw the numbers they are given (found by their gids), and refuse mismatched
arrays in one sentence."""

from __future__ import annotations

import numpy as np
import pytest

from lazarus_nb.show.plots.ablation import GID_CLASS, GID_RANDOM, ablation_strips
from lazarus_nb.show.plots.steering import GID_CURVE, steering_curves

COSTS = {"answer_nll": "NLL", "kl": "KL"}


def test_ablation_strips_show_each_draw_and_the_class_value():
    panels = {"base": {"answer_nll": ([0.1, 0.2, 0.3], 0.9, None), "kl": ([0.0, 0.5], 0.25, None)},
              "adapted": {"answer_nll": ([0.4, 0.1], -0.2, 1.5), "kl": ([1.0, 2.0, 3.0], 4.0, 0.1)}}
    fig = ablation_strips(panels, COSTS, "t")
    found = {}
    for ax in fig.axes:
        for coll in ax.collections:
            gid = coll.get_gid() or ""
            if gid.startswith((GID_RANDOM, GID_CLASS)):
                found[gid] = sorted(np.asarray(coll.get_offsets())[:, 1].tolist())
    for model, by_cost in panels.items():
        for cost, (draws, value, _) in by_cost.items():
            assert found[f"{GID_RANDOM}{model}:{cost}"] == sorted(draws)
            assert found[f"{GID_CLASS}{model}:{cost}"] == [value]
    with pytest.raises(ValueError, match="base kl random costs is empty"):
        ablation_strips({"base": {"answer_nll": ([0.1], 0.0, None), "kl": ([], 0.0, None)}}, COSTS, "t")


def test_steering_curves_draw_each_series_against_alpha():
    alphas = [-1.0, 0.0, 1.0]
    series = {"p_to": ([0.1, 0.2, 0.4], [[0.05, 0.2], [0.1, 0.3], None]),
              "p_from": ([0.5, 0.4, 0.1], [None, None, None]),
              "lens_to": ([0.0, 0.5, 1.0], [[0.0, 0.2], [0.3, 0.7], [0.8, 1.0]])}
    titles = {"p_to": "P({to})", "p_from": "P({from})", "lens_to": "lens {to}"}
    fig = steering_curves(alphas, {"add -> multiply": {"base": series, "adapted": series}}, titles, "t")
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}
    for model in ("base", "adapted"):
        for panel, (values, _) in series.items():
            ln = lines[f"{GID_CURVE}add -> multiply:{model}:{panel}"]
            assert list(ln.get_xdata()) == alphas and list(ln.get_ydata()) == values
    assert [ax.get_title() for ax in fig.axes[:3]] == ["P(multiply)", "P(add)", "lens multiply"]
    with pytest.raises(ValueError, match="has 2 values but alphas has 3"):
        steering_curves(alphas, {"a -> b": {"base": {**series, "p_to": ([0.1, 0.2], [None, None])}}}, titles, "t")
