"""Training figures from arrays: loss curves and the live training dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.emergence import emergence_heatmap
from lazarus_nb.show.plots.style import INK, add_legend, figure_style, new_axes, new_figure, placeholder, step_locator


def loss_curves(
    steps: Sequence[int],
    total: Sequence[float],
    cls_loss: Sequence[float],
    ans_loss: Sequence[float],
    ax: Axes | None = None,
    title: str = "Dual-reward training loss",
) -> Figure:
    """Total, classification (logit lens at the classifier layer) and answer loss against training step."""
    st = check.steps(steps)
    series = []
    for name, arr in (("total", total), ("cls_loss", cls_loss), ("ans_loss", ans_loss)):
        v = check.vector(name, arr)
        check.same_length(name, v, st.size, "steps")
        series.append(v)
    with figure_style():
        fig, ax = new_axes(ax, (8.5, 4.0))  # wider: the legend sits outside the axes
        marker = "o" if st.size <= 30 else None
        labels = ("total (weighted)", "classification\n(logit lens,\nclassifier layer)", "answer\n(final layer)")
        colors = (INK, "#E69F00", "#56B4E9")
        widths = (2.4, 1.6, 1.6)
        for v, lab, c, w in zip(series, labels, colors, widths, strict=True):
            ax.plot(st, v, color=c, linewidth=w, label=lab, marker=marker, markersize=3)
        ax.xaxis.set_major_locator(step_locator())
        if st.size == 1:
            ax.set_xlim(st[0] - 1, st[0] + 1)
        ax.set_xlabel("training step")
        ax.set_ylabel("loss (cross-entropy, nats)")
        ax.set_title(title)
        ax.grid(True, axis="y")
        # outside the data area: inside it the legend covered the curves, which can run anywhere
        add_legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


class Dashboard:
    """Live figure for training: left loss curves, right emergence heatmap.

    ``update`` clears and redraws the axes IN PLACE on the same :attr:`fig` (never a new figure), so a live
    display (``app.display.FigureSlot``) shows one figure for a whole run; ``figures.update_dashboard`` feeds it
    a training ``History``. Empty histories (before the first step / first snapshot) draw a "waiting"
    placeholder instead of raising; mismatched shapes still raise ``ValueError``.
    """

    def __init__(self, fig: Figure | None = None):
        self.fig: Figure = fig if fig is not None else new_figure((13.0, 4.8))
        self.fig.set_facecolor("white")
        self.update([], [], [], [], [], [], np.zeros((0, 0)))

    def update(
        self, steps, total, cls_loss, ans_loss, snap_steps, layers, values, classifier_layer=None
    ) -> None:
        fig = self.fig
        fig.clear()
        with figure_style():
            ax_loss, ax_heat = fig.subplots(1, 2, width_ratios=[1.0, 1.15])
            fig.set_facecolor("white")
            if len(steps) == 0 and len(total) == 0:
                placeholder(ax_loss, "Dual-reward training loss", "waiting for the first training step")
            else:
                loss_curves(steps, total, cls_loss, ans_loss, ax=ax_loss, title="Dual-reward training loss")
            if len(snap_steps) == 0 and np.size(values) == 0:
                placeholder(ax_heat, "Classifier emergence", "waiting for the first logit-lens snapshot")
            else:
                emergence_heatmap(snap_steps, layers, values, classifier_layer=classifier_layer, ax=ax_heat,
                                  title="Classifier emergence: P(correct class token)")
            last = f"step {int(steps[-1])}" if len(steps) else "not started"
            fig.suptitle(f"Training dashboard ({last})")


def training_dashboard(fig: Figure | None = None) -> Dashboard:
    """Create a :class:`Dashboard` (on ``fig`` if given, else a new :class:`NotebookFigure`)."""
    return Dashboard(fig)
