"""The subspace ablation's figure from arrays (docs/science.md "Ablation"): per model (rows) and cost (columns), the
random subspaces' costs as a strip of points, the class subspace's cost as a marked line, and optionally a third
condition (the adapter switched off up to the layer) as another mark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.style import GREY, INK, OTHER_COLORS, figure_style, new_figure, placeholder

GID_RANDOM = "lazarus:ablation:random:"
"""Prefix of each strip's gid (``lazarus:ablation:random:<model>:<cost>``), by which tests find what was drawn."""

GID_CLASS = "lazarus:ablation:class:"
"""Prefix of each class-subspace mark's gid (``lazarus:ablation:class:<model>:<cost>``)."""

CostPanel = tuple[Sequence[float], float, float | None]
"""(the random draws' costs, the class subspace's cost, the other condition's cost or None)."""


def ablation_strips(
    panels: Mapping[str, Mapping[str, CostPanel]],
    cost_labels: Mapping[str, str],
    title: str,
    other_label: str = "LoRA off up to the layer",
) -> Figure:
    """``panels``: model -> cost -> ``CostPanel``; one row per model, one column per cost (in ``cost_labels``'
    order, labelled by it). Each panel: the random draws as jittered points (fixed jitter: the same picture every
    time) with their mean as a short grey line, the class subspace's cost as a thick line and a diamond."""
    with figure_style():
        costs = list(cost_labels)
        fig = new_figure((3.0 * max(len(costs), 1) + 0.8, 2.6 * max(len(panels), 1) + 0.9))
        if not panels:
            placeholder(fig.add_subplot(), title, "no ablation to show")
            return fig
        axes = fig.subplots(len(panels), len(costs), squeeze=False)
        jitter = np.random.default_rng(0)
        for r, (model, by_cost) in enumerate(panels.items()):
            for c, cost in enumerate(costs):
                ax = axes[r, c]
                draws, value, other = by_cost[cost]
                d = check.vector(f"{model} {cost} random costs", draws)
                x = jitter.uniform(-0.18, 0.18, d.size)
                ax.scatter(x, d, s=16, color=GREY, alpha=0.75, linewidths=0, gid=f"{GID_RANDOM}{model}:{cost}",
                           label=f"random subspaces ({d.size})", zorder=2)
                ax.hlines(d.mean(), -0.3, 0.3, color=GREY, linewidth=1.2, zorder=2)
                ax.hlines(value, -0.45, 0.45, color=OTHER_COLORS[0], linewidth=2.4, zorder=3)
                ax.scatter([0.0], [value], marker="D", s=46, color=OTHER_COLORS[0], edgecolors=INK, linewidths=0.6,
                           gid=f"{GID_CLASS}{model}:{cost}", label="class subspace", zorder=4)
                if other is not None:
                    ax.scatter([0.0], [other], marker="X", s=52, color=OTHER_COLORS[1], edgecolors=INK,
                               linewidths=0.6, label=other_label, zorder=4)
                ax.set_xlim(-0.6, 0.6)
                ax.set_xticks([])
                ax.grid(True, axis="y")
                if r == 0:
                    ax.set_title(cost_labels[cost], fontsize="medium")
                if c == 0:
                    ax.set_ylabel(f"{model}\ncost (larger = worse)")
        handles = {}
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        axes[0, -1].legend(list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.03, 1.0),
                           borderaxespad=0.0)
        fig.suptitle(title)
    return fig
