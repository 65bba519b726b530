"""The control-task figure from arrays: the lens accuracy of the truth and of each control over training steps,
on held-out and on training problems (docs/science.md "Control tasks").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.style import (
    INK,
    OTHER_COLORS,
    add_legend,
    figure_style,
    new_figure,
    placeholder,
    step_locator,
)

# The truth solid and dark; each control its own colour and dash, so they stay apart in greyscale too.
_STYLES = {"true": (INK, "-", "o"), "permuted": (OTHER_COLORS[1], (0, (1, 1.5)), "s"),
           "operand": (OTHER_COLORS[0], (0, (5, 2)), "^"), "problem": ("#CC79A7", (0, (3, 1, 1, 1)), "D")}

GID_SERIES = "lazarus:label_map:"
"""Prefix of each line's gid (``lazarus:label_map:<name>:<set>``), by which tests find what was drawn."""


def controls_curves(
    panels: Mapping[str, Mapping[str, tuple[Sequence[int], Sequence[Sequence[float]]]]],
    titles: Mapping[str, str],
    title: str,
    readable: float | None = None,
) -> Figure:
    """One panel per problem set (``panels``: set -> label map -> (steps, per-seed accuracies (seeds x steps))).
    Each label map is its seeds' mean with a band from their minimum to their maximum; ``readable`` draws the
    threshold."""
    with figure_style():
        fig = new_figure((4.6 * max(len(panels), 1) + 1.6, 3.8))
        if not panels:
            placeholder(fig.add_subplot(), title, "no control runs to compare yet")
            return fig
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (name, series) in zip(axes, panels.items()):
            for label_map, (steps, values) in series.items():
                st = check.steps(steps)
                v = np.asarray(values, dtype=float).reshape(-1, st.size)
                color, dash, marker = _STYLES.get(label_map, (INK, "-", "o"))
                seeds = v.shape[0]
                ax.plot(st, v.mean(axis=0), color=color, linestyle=dash, marker=marker, markersize=3.5,
                        linewidth=2.0 if label_map == "true" else 1.6, gid=f"{GID_SERIES}{label_map}:{name}",
                        label=f"{label_map} ({seeds} seed{'s' if seeds != 1 else ''})")
                if seeds > 1:
                    ax.fill_between(st, v.min(axis=0), v.max(axis=0), color=color, alpha=0.15, linewidth=0)
            if readable is not None:
                ax.axhline(readable, color="#999999", linewidth=0.8, linestyle=":")
            ax.set_ylim(-0.02, 1.02)
            ax.xaxis.set_major_locator(step_locator())
            ax.set_xlabel("training step")
            ax.set_title(titles.get(name, name))
            ax.grid(True, axis="y")
        axes[0].set_ylabel("lens full-vocab top-1 at the classifier layer")
        add_legend(axes[-1], loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        fig.suptitle(title)
    return fig
