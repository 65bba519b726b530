"""The emergence scrubber's figure, from plain arrays (``figures.scrub_figure`` unpacks a training ``History``).

Two panels on one figure: left, one line per class, the lens probability of that class's own token at every
layer at *one* snapshot (the classifier layer marked); right, the layer x step emergence heatmap
(``plots.emergence_heatmap``) with that snapshot's step marked by a vertical line. :meth:`ScrubFigure.show`
moves both to another snapshot by updating the existing artists (line data, marker position, titles): no new
figure, no new axes, so a slider can call it on every move. The left panel's log y-limits span every snapshot,
so the axis stays put while the lines move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure

from . import plot_inputs as check
from .plots import (  # the shared figure style and helpers (plots.py is at its size limit)
    _INK,
    _class_styles,
    _legend,
    _log_ylim,
    _mark_classifier_v,
    _new_figure,
    _ordered,
    _set_layer_axis,
    _style,
    emergence_heatmap,
)

__all__ = ["GID_STEP", "ScrubFigure"]

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
        for name in _ordered(class_values):
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
        self.fig: Figure = _new_figure((13.0, 4.8))
        with _style():
            self.ax_lines, self.ax_heat = self.fig.subplots(1, 2, width_ratios=[1.0, 1.15])
            styles = _class_styles(list(self.class_values))
            self.lines = {}
            for name, arr in self.class_values.items():
                color, marker = styles[name]
                (self.lines[name],) = self.ax_lines.plot(lay, arr[0], color=color, marker=marker, markersize=4,
                                                         linewidth=2, label=name, zorder=3)
            _mark_classifier_v(self.ax_lines, cls)
            _set_layer_axis(self.ax_lines, lay, "x")
            self.ax_lines.set_xlim(lay.min() - 0.5, lay.max() + 0.5)
            self.ax_lines.set_yscale("log")
            _log_ylim(self.ax_lines, [v for arr in self.class_values.values() for v in arr])
            self.ax_lines.set_ylabel("P(own class token) at the last prompt token\n(mean over that class's problems)")
            self.ax_lines.grid(True, axis="y", which="major")
            _legend(self.ax_lines, loc="upper left", title="class")
            emergence_heatmap(st, lay, values, classifier_layer=cls, ax=self.ax_heat,
                              title="Mean P(correct class token), all snapshots")
            self.marker = self.ax_heat.axvline(st[0], color="white", linewidth=2.2, zorder=4)
            self.marker.set_path_effects([patheffects.withStroke(linewidth=4.0, foreground=_INK)])
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
