"""The figures' style: the public API every module of :mod:`lazarus_nb.show.plots` draws with (a notebook can
use it too, to match them).

* **Colours and markers**: :data:`CLASS_COLORS` and :data:`CLASS_MARKERS` (one fixed pair per operation
  class), :data:`OTHER_COLORS` and :data:`EXTRA_MARKERS` (other series), :data:`PROBE_MARKERS`, :data:`INK`
  (text), :data:`GREY` (secondary marks); :func:`class_styles` (a colour and marker per series name) and
  :func:`ordered_classes` (the classes in their fixed order first).
* **Figures**: :func:`figure_style` (the rc context every figure is drawn in), :func:`new_figure` and
  :func:`new_axes` (a white card; an existing axes is kept), :class:`NotebookFigure`, :func:`placeholder`
  (an axes with a message instead of data).
* **Axes**: :func:`set_layer_axis` (integer layer ticks), :func:`step_locator` (training-step ticks),
  :func:`mark_classifier_layer`, :func:`add_legend`, :func:`log_ylim`.
* **Artist ids** (``Artist.get_gid()``), by which redraws and tests find what a figure drew:
  :data:`GID_CLS`, :data:`GID_CHANCE`, :data:`GID_PROBE`, :data:`GID_CONTROL`; :func:`existing_artists`.

Every plotting function of :mod:`lazarus_nb.show.plots` takes plain arrays / lists (not the package's
dataclasses; :mod:`lazarus_nb.show.figures` turns results into these calls) and returns a
:class:`matplotlib.figure.Figure`. Nothing touches ``pyplot``: figures are built with the ``Figure`` class
directly, so no global figure registry grows, nothing pops up in a window, and a script under the Agg backend
behaves exactly like a notebook.

Displaying in Jupyter
---------------------
A bare ``Figure`` shows as ``<Figure size ...>`` text in a kernel without the inline backend (no
``%matplotlib inline``, no pyplot call). The figures made here are :class:`NotebookFigure` instances, whose
``_repr_png_`` is :func:`~lazarus_nb.show.plots.output.png_bytes`, so ``fig`` as the last expression of a cell
and ``display(fig)`` work either way. ``png_bytes`` is the one figure-to-PNG rendering for display (the
widgets' live figure slots use it too); :func:`~lazarus_nb.show.plots.output.save` writes files.

Themes
------
Figures are drawn inside :func:`matplotlib.rc_context` with an explicit *opaque white* figure and axes
background and dark text. The inline backend's default figure background is transparent, which in the
JupyterLab dark theme puts black labels on a near-black page; a dark style would fail the other way in the
light theme. A white "card" with dark ink reads the same in both themes (and in saved PNGs and slides), and
it does not depend on whatever global style the user has set.

Colours
-------
The four classes have fixed Okabe-Ito colours (colourblind-safe) *and* fixed markers, so lines stay
distinguishable in greyscale. Heatmaps use ``viridis`` (perceptually uniform, colourblind-safe).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator

from lazarus_nb.show.plots.output import png_bytes

# Okabe & Ito (2008) palette. Orange (#E69F00) is kept out of the class colours because it is close to
# vermillion; yellow (#F0E442) is too light on white.
CLASS_COLORS: dict[str, str] = {
    "multiply": "#0072B2",  # blue
    "add": "#009E73",  # bluish green
    "subtract": "#D55E00",  # vermillion
    "divide": "#CC79A7",  # reddish purple
}
"""Fixed colour per operation class, used by every figure."""


CLASS_MARKERS: dict[str, str] = {"multiply": "o", "add": "s", "subtract": "^", "divide": "D"}
"""Fixed marker per operation class (second cue besides colour)."""


OTHER_COLORS = ("#E69F00", "#56B4E9", "#000000", "#F0E442")
"""Colours for series that are not classes (probe families, highlighted layers, loss terms), in turn."""


EXTRA_MARKERS = ("v", "P", "X", "*", "h")
"""Markers for series that are not classes, in turn with :data:`OTHER_COLORS`."""


PROBE_MARKERS = ("o", "s", "^", "D", "v")
"""Markers of the probe figure's families, in turn."""


INK = "#1a1a1a"
"""Text and line colour on the white card."""


GREY = "#7f7f7f"
"""Secondary marks: chance lines, placeholder text, controls."""


_CLS_LINE = dict(color=INK, linestyle="--", linewidth=1.3)


GID_CLS = "lazarus:classifier_layer"
"""The classifier-layer marker (:func:`mark_classifier_layer`)."""


GID_CHANCE = "lazarus:chance"
"""The probe figure's chance line."""


GID_PROBE = "lazarus:probe"
"""A probe accuracy curve."""


GID_CONTROL = "lazarus:control"
"""A probe's shuffled-label control curve."""


_MAX_LAYER_TICKS = 16


def step_locator() -> MaxNLocator:
    """Ticks for a training-step axis: integers, at most about 10, on round numbers."""
    return MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10], integer=True)


_RC = {
    "figure.facecolor": "white",
    "figure.edgecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.edgecolor": "white",
    "savefig.transparent": False,
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.titlecolor": INK,
    "axes.edgecolor": "#555555",
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "legend.facecolor": "white",
    "legend.edgecolor": "#cccccc",
    "legend.labelcolor": INK,
    "legend.framealpha": 0.9,
    "legend.fontsize": 8.5,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.7,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.cmap": "viridis",
    "lines.solid_capstyle": "round",
}


def figure_style():
    """The rc context every figure is built and drawn in (see "Themes" above)."""
    return matplotlib.rc_context(_RC)


class NotebookFigure(Figure):
    """A plain ``Figure`` that Jupyter can show without the inline backend (see module docstring)."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def new_figure(figsize: tuple[float, float]) -> NotebookFigure:
    """An empty white figure (constrained layout) that shows in Jupyter without the inline backend."""
    with figure_style():
        fig = NotebookFigure(figsize=figsize, layout="constrained")
    fig.set_facecolor("white")
    return fig


def _root_figure(ax: Axes) -> Figure:
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10
        return ax.figure


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or, when ``ax`` is None, a new figure of ``figsize`` with one axes."""
    if ax is None:
        fig = new_figure(figsize)
        with figure_style():
            ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)
    # Opaque white even on caller-provided axes: see "Themes" in the module docstring.
    fig.set_facecolor("white")
    ax.set_facecolor("white")
    return fig, ax


def _nice_step(n: int) -> int:
    for step in (1, 2, 4, 5, 10, 20, 25, 50, 100):
        if math.ceil(n / step) <= _MAX_LAYER_TICKS:
            return step
    return math.ceil(n / _MAX_LAYER_TICKS)


def _layer_ticks(layers: Sequence[int]) -> list[int]:
    """Readable integer layer ticks: all of them up to 16, otherwise every 2nd / 4th / 5th ... layer."""
    u = sorted({int(v) for v in layers})
    step = _nice_step(len(u))
    if step == 1:
        return u
    contiguous = u == list(range(u[0], u[-1] + 1))
    ticks = [v for v in u if v % step == 0] if contiguous else u[::step]
    return ticks if len(ticks) >= 2 else u[::step]


def set_layer_axis(ax: Axes, layers: Sequence[int], axis: str = "x") -> None:
    """Make ``axis`` ("x" or "y") a layer axis: readable integer ticks, a minor tick at every layer, its label."""
    u = sorted({int(v) for v in layers})
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(_layer_ticks(u)))
    target.set_minor_locator(FixedLocator(u))  # a small tick at every layer
    label = "layer (transformer block output)"
    if axis == "x":
        ax.set_xlabel(label)
    else:
        ax.set_ylabel(label)


def existing_artists(ax: Axes, gid: str) -> list:
    """The lines of ``ax`` with artist id ``gid``."""
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


def mark_classifier_layer(ax: Axes, layer: int | None) -> None:
    """A dashed vertical line at ``layer`` (once per axes; nothing for None)."""
    if layer is None or any(ln.get_xdata()[0] == layer for ln in existing_artists(ax, GID_CLS)):
        return
    ln = ax.axvline(layer, label=f"classifier layer {layer}", zorder=1.5, **_CLS_LINE)
    ln.set_gid(GID_CLS)


def add_legend(ax: Axes, **kw) -> None:
    """A legend of ``ax``'s labelled artists (``kw`` as for ``Axes.legend``); none when nothing is labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, **kw)


def class_styles(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per name: a class's own pair, other names the next of :data:`OTHER_COLORS`."""
    out: dict[str, tuple[str, str]] = {}
    extra = 0
    for name in names:
        if name in CLASS_COLORS:
            out[name] = (CLASS_COLORS[name], CLASS_MARKERS[name])
        else:
            color = OTHER_COLORS[extra % len(OTHER_COLORS)]
            out[name] = (color, EXTRA_MARKERS[extra % len(EXTRA_MARKERS)])
            extra += 1
    return out


def ordered_classes(names) -> list[str]:
    """Known classes in the canonical order first, then any others in the given order."""
    names = list(names)
    return [c for c in CLASS_COLORS if c in names] + [n for n in names if n not in CLASS_COLORS]


def log_ylim(ax: Axes, series) -> None:
    """Log y-limits: from the decade below the smallest positive value (floor 1e-30, so base-model
    probabilities are not clipped) to 1.5."""
    positive = [v for p in series for v in np.asarray(p, dtype=float) if np.isfinite(v) and v > 0]
    lo = min(positive) if positive else 1e-6
    ax.set_ylim(max(10 ** math.floor(math.log10(lo)), 1e-30), 1.5)


def placeholder(ax: Axes, title: str, text: str) -> None:
    """``ax`` as an empty framed panel with ``title`` and a centred message (e.g. "no data yet")."""
    ax.set_facecolor("white")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=GREY, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor("#d0d0d0")
