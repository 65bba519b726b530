"""The emergence scrubber's figure, from plain arrays (``figures.scrub_figure`` unpacks a training ``History``).

Two panels on one figure: left, one line per class, the lens probability of that class's own token at every
layer at *one* snapshot (the classifier layer marked); right, the layer x step emergence heatmap
(:func:`emergence_heatmap`) with that snapshot's step marked by a vertical line. :meth:`ScrubFigure.show`
moves both to another snapshot by updating the existing artists (line data, marker position, titles): no new
figure, no new axes, so a slider can call it on every move. The left panel's log y-limits span every snapshot,
so the axis stays put while the lines move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator

from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.style import (
    GID_CLS,
    GREY,
    INK,
    add_legend,
    class_styles,
    figure_style,
    log_ylim,
    mark_classifier_layer,
    new_axes,
    new_figure,
    ordered_classes,
    set_layer_axis,
    step_locator,
)


def _edges(c: np.ndarray) -> np.ndarray:
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[:-1] + c[1:]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def emergence_heatmap(
    steps: Sequence[int],
    layers: Sequence[int],
    values: np.ndarray,
    classifier_layer: int | None = None,
    ax: Axes | None = None,
    title: str = "Classifier emergence: P(correct class token) by layer and step",
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cbar_label: str = "mean P(class token)",
) -> Figure:
    """Layer x training-step heatmap; ``values`` has shape (len(layers), len(steps)).

    x = training step (true scale; each cell spans half-way to its neighbours), y = layer with layer 0 at
    the bottom, colourbar on the right, classifier layer marked by a horizontal dashed line.
    """
    st = check.steps(steps)
    lay = check.layers(layers, increasing=True)
    vals = check.grid("values", values, lay.size, st.size)
    cls = check.classifier(classifier_layer, lay)
    with figure_style():
        fig, ax = new_axes(ax, (7.5, 5.0))
        mesh = ax.pcolormesh(_edges(st), _edges(lay.astype(float)), vals, vmin=vmin, vmax=vmax,
                             cmap="viridis", shading="flat")
        fig.colorbar(mesh, ax=ax, label=cbar_label, pad=0.02)
        if cls is not None:
            ln = ax.axhline(cls, color="white", linestyle="--", linewidth=1.6,
                            label=f"classifier layer {cls}")
            ln.set_path_effects([patheffects.withStroke(linewidth=3.2, foreground=INK)])
            ln.set_gid(GID_CLS)
            # A text label instead of a legend entry (a stroked dash renders as "==" in a legend). It sits at
            # the left end, over the early steps, which are usually the least interesting cells.
            ax.annotate(f"classifier layer {cls}", xy=(0.0, cls), xycoords=("axes fraction", "data"),
                        xytext=(4, 3), textcoords="offset points", ha="left", va="bottom", color="white",
                        fontsize=8.5, fontweight="bold",
                        path_effects=[patheffects.withStroke(linewidth=2.5, foreground=INK)])
        set_layer_axis(ax, lay, "y")
        if st.size <= 12:
            ax.xaxis.set_major_locator(FixedLocator(st.tolist()))
        else:
            ax.xaxis.set_major_locator(step_locator())
        ax.set_xlabel("training step")
        ax.set_title(title)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
    return fig


def emergence_curves(
    steps: Sequence[int],
    layers: Sequence[int],
    values: np.ndarray,
    highlight: Sequence[int] | None = None,
    classifier_layer: int | None = None,
    ax: Axes | None = None,
    title: str = "Classifier emergence: per-layer curves over training",
    ylabel: str = "mean P(class token)",
) -> Figure:
    """One curve per layer over training steps; ``values`` has shape (len(layers), len(steps)).

    Highlighted layers are coloured and labelled, the others are thin grey ("other layers"). Default
    highlight: the classifier layer and its neighbours; without a classifier layer, the layer with the
    highest final value and its neighbours.
    """
    st = check.steps(steps)
    lay = check.layers(layers)
    vals = check.grid("values", values, lay.size, st.size)
    cls = check.classifier(classifier_layer, lay)
    present = set(lay.tolist())
    if highlight is None:
        if cls is not None:
            centre = cls
        else:
            last = vals[:, -1]
            centre = int(lay[int(np.nanargmax(last))]) if np.isfinite(last).any() else int(lay[0])
        hl = [v for v in (centre - 1, centre, centre + 1) if v in present]
    else:
        hl = [int(v) for v in highlight]
        missing = [v for v in hl if v not in present]
        if missing:
            raise ValueError(f"highlight layers {missing} are not among the plotted layers")
    marker = "o" if st.size <= 30 else None
    with figure_style():
        fig, ax = new_axes(ax, (7.5, 4.5))
        grey_labelled = False
        for i, layer in enumerate(lay.tolist()):
            if layer in hl:
                continue
            ax.plot(st, vals[i], color="#c4c4c4", linewidth=0.9, zorder=1,
                    label=None if grey_labelled else "other layers")
            grey_labelled = True
        palette = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#D55E00", "#0072B2"]
        others = iter(palette[1:])
        for layer in hl:
            i = int(np.nonzero(lay == layer)[0][0])
            if layer == cls:
                color, lw, lab = palette[0], 2.6, f"layer {layer} (classifier)"
            else:
                color, lw, lab = next(others, GREY), 1.8, f"layer {layer}"
            ax.plot(st, vals[i], color=color, linewidth=lw, marker=marker, markersize=3.5, label=lab,
                    zorder=3)
        ax.xaxis.set_major_locator(step_locator())
        if st.size == 1:
            ax.set_xlim(st[0] - 1, st[0] + 1)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, axis="y")
        add_legend(ax, loc="best")
    return fig


GID_STEP = "lazarus:current_step"
"""The ``gid`` of the heatmap's current-step marker (tests and callers find it by this)."""


class ScrubFigure:
    """The scrubber figure for snapshots at ``steps``: ``values`` (len(layers), len(steps)) is the heatmap's
    mean P(correct class token); ``class_values`` maps a class name to its (len(steps), len(layers)) P(own class
    token), NaN where a snapshot has no value for it. ``show(i)`` selects snapshot ``i`` (negative counts from
    the end) and returns :attr:`fig` (always the same figure)."""

    def __init__(
        self,
        steps: Sequence[int],
        layers: Sequence[int],
        values: np.ndarray,
        class_values: Mapping[str, np.ndarray],
        classifier_layer: int | None = None,
        title: str = "Classifier emergence, one snapshot at a time",
    ):
        st = check.steps(steps)
        lay = check.layers(layers, increasing=True)
        check.grid("values", values, lay.size, st.size)
        if not class_values:
            raise ValueError("class_values is empty; give at least one class")
        self.class_values: dict[str, np.ndarray] = {}
        for name in ordered_classes(class_values):
            arr = np.asarray(class_values[name], dtype=float)
            if arr.shape != (st.size, lay.size):
                raise ValueError(f"class_values[{name!r}] has shape {arr.shape} but must be (len(steps), "
                                 f"len(layers)) = ({st.size}, {lay.size})")
            for row in arr:
                check.probabilities(f"class_values[{name!r}]", row, lay.size)
            self.class_values[name] = arr
        cls = check.classifier(classifier_layer, lay)
        self.steps = st.astype(int).tolist()
        self.layers = lay.tolist()
        self.index = 0
        self.fig: Figure = new_figure((13.0, 4.8))
        with figure_style():
            self.ax_lines, self.ax_heat = self.fig.subplots(1, 2, width_ratios=[1.0, 1.15])
            styles = class_styles(list(self.class_values))
            self.lines = {}
            for name, arr in self.class_values.items():
                color, marker = styles[name]
                (self.lines[name],) = self.ax_lines.plot(lay, arr[0], color=color, marker=marker, markersize=4,
                                                         linewidth=2, label=name, zorder=3)
            mark_classifier_layer(self.ax_lines, cls)
            set_layer_axis(self.ax_lines, lay, "x")
            self.ax_lines.set_xlim(lay.min() - 0.5, lay.max() + 0.5)
            self.ax_lines.set_yscale("log")
            log_ylim(self.ax_lines, [v for arr in self.class_values.values() for v in arr])
            self.ax_lines.set_ylabel("P(own class token) at the last prompt token\n(mean over that class's problems)")
            self.ax_lines.grid(True, axis="y", which="major")
            add_legend(self.ax_lines, loc="upper left", title="class")
            emergence_heatmap(st, lay, values, classifier_layer=cls, ax=self.ax_heat,
                              title="Mean P(correct class token), all snapshots")
            self.marker = self.ax_heat.axvline(st[0], color="white", linewidth=2.2, zorder=4)
            self.marker.set_path_effects([patheffects.withStroke(linewidth=4.0, foreground=INK)])
            self.marker.set_gid(GID_STEP)
            self.fig.suptitle(title)
        self.show(0)

    def show(self, index: int) -> Figure:
        """Select snapshot ``index``: the lines show its per-class values and the marker sits at its step."""
        n = len(self.steps)
        if not -n <= index < n:
            raise IndexError(f"snapshot {index} does not exist; there are {n} (0..{n - 1})")
        self.index = index % n
        step = self.steps[self.index]
        for name, line in self.lines.items():
            line.set_ydata(self.class_values[name][self.index])
        self.marker.set_xdata([step, step])
        missing = all(np.isnan(arr[self.index]).all() for arr in self.class_values.values())
        note = " (no per-class values recorded)" if missing else ""
        self.ax_lines.set_title(f"Step {step} (snapshot {self.index + 1} of {n}): P(own class token){note}")
        return self.fig
