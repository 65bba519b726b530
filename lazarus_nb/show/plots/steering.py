"""The steering figure from arrays (docs/science.md "Steering"): per ordered pair (rows), against alpha, the mean
probability of the target operation's answer, of the prompt's own answer (log scale) and the share of prompts whose
lens class is the target's, each with its 95% interval as a band, one line per model (base, adapted).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.style import GREY, OTHER_COLORS, figure_style, new_figure, placeholder

MODEL_STYLES = {"base": (GREY, "--", "s"), "adapted": ("#0072B2", "-", "o")}
"""(colour, dash, marker) per model; another label takes the next of ``OTHER_COLORS``."""

GID_CURVE = "lazarus:steering:"
"""Prefix of each curve's gid (``lazarus:steering:<pair>:<model>:<panel>``), by which tests find what was drawn."""

Series = tuple[Sequence[float], Sequence[Sequence[float] | None]]
"""(values per alpha, [lo, hi] per alpha, or None where no interval was measured)."""


def _band(name: str, values: np.ndarray, ci: Sequence[Sequence[float] | None]) -> tuple[np.ndarray, np.ndarray]:
    if len(ci) != values.size:
        raise ValueError(f"{name} needs one interval per alpha, got {len(ci)} for {values.size}")
    lo = np.array([v if c is None else c[0] for v, c in zip(values, ci)], dtype=float)
    hi = np.array([v if c is None else c[1] for v, c in zip(values, ci)], dtype=float)
    return lo, hi


def steering_curves(
    alphas: Sequence[float],
    pairs: Mapping[str, Mapping[str, Mapping[str, Series]]],
    panel_titles: Mapping[str, str],
    title: str,
) -> Figure:
    """``pairs``: pair name (``"add -> multiply"``) -> model -> panel -> ``Series``, the panels ``"p_to"``,
    ``"p_from"`` (probabilities, log scale) and ``"lens_to"`` (a share, linear), titled by ``panel_titles`` (which
    may name the pair's operations: ``{to}``, ``{from}``)."""
    a = check.vector("alphas", alphas)
    panels = ("p_to", "p_from", "lens_to")
    with figure_style():
        fig = new_figure((13.0, 3.1 * max(len(pairs), 1) + 0.8))
        if not pairs:
            placeholder(fig.add_subplot(), title, "no steering to show")
            return fig
        axes = fig.subplots(len(pairs), len(panels), squeeze=False)
        for r, (pair, models) in enumerate(pairs.items()):
            from_op, _, to_op = pair.partition(" -> ")
            for c, panel in enumerate(panels):
                ax = axes[r, c]
                positive = []
                for k, (model, series) in enumerate(models.items()):
                    color, dash, marker = MODEL_STYLES.get(model, (OTHER_COLORS[k % len(OTHER_COLORS)], "-", "^"))
                    values = check.vector(f"{pair} {model} {panel}", series[panel][0])
                    check.same_length(f"{pair} {model} {panel}", values, a.size, "alphas")
                    lo, hi = _band(f"{pair} {model} {panel}", values, series[panel][1])
                    positive += [v for v in np.concatenate([values, lo]) if v > 0]
                    ax.plot(a, values, color=color, linestyle=dash, marker=marker, markersize=4, linewidth=1.8,
                            label=model, gid=f"{GID_CURVE}{pair}:{model}:{panel}")
                    ax.fill_between(a, lo, hi, color=color, alpha=0.15, linewidth=0)
                if panel == "lens_to":
                    ax.set_ylim(-0.03, 1.03)
                else:
                    ax.set_yscale("log")
                    floor = 10 ** math.floor(math.log10(min(positive))) if positive else 1e-12
                    ax.set_ylim(floor, 1.5)
                ax.axvline(0.0, color=GREY, linewidth=0.8, linestyle=":")
                ax.grid(True, axis="y")
                ax.set_title(panel_titles[panel].format(to=to_op, **{"from": from_op}), fontsize="medium")
                if r == len(pairs) - 1:
                    ax.set_xlabel("alpha (multiples of mean h[to] - mean h[from])")
        axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0)
        fig.suptitle(title)
    return fig
