"""Figures for the classifier-emergence workbench.

Every function takes plain arrays / lists (not the package's dataclasses; :mod:`lazarus_nb.figures` turns
results into these calls) and returns a :class:`matplotlib.figure.Figure`. Nothing here touches ``pyplot``:
figures are built with the ``Figure`` class directly, so no global figure registry grows, nothing pops up in a
window, and a script under the Agg backend behaves exactly like a notebook.

Displaying in Jupyter
---------------------
A bare ``Figure`` shows as ``<Figure size ...>`` text in a kernel without the inline backend (no
``%matplotlib inline``, no pyplot call; checked in ipykernel 7 / matplotlib 3.11). The figures returned here
are :class:`NotebookFigure` instances, whose ``_repr_png_`` is :func:`png_bytes`, so ``fig`` as the last
expression of a cell and ``display(fig)`` work either way. :func:`png_bytes` is the one figure-to-PNG
rendering for display (the widgets' live figure slots use it too); :func:`save` writes files.

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


# Colours for things that are not classes (probe families, highlighted layers, loss terms).
OTHER_COLORS = ("#E69F00", "#56B4E9", "#000000", "#F0E442")


EXTRA_MARKERS = ("v", "P", "X", "*", "h")


PROBE_MARKERS = ("o", "s", "^", "D", "v")


INK = "#1a1a1a"


GREY = "#7f7f7f"


CLS_LINE = dict(color=INK, linestyle="--", linewidth=1.3)


GID_CLS = "lazarus:classifier_layer"


GID_CHANCE = "lazarus:chance"


GID_PROBE = "lazarus:probe"


GID_CONTROL = "lazarus:control"


MAX_LAYER_TICKS = 16


def step_locator() -> MaxNLocator:
    return MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10], integer=True)


RC = {
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
    return matplotlib.rc_context(RC)


class NotebookFigure(Figure):
    """A plain ``Figure`` that Jupyter can show without the inline backend (see module docstring)."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def new_figure(figsize: tuple[float, float]) -> NotebookFigure:
    with figure_style():
        fig = NotebookFigure(figsize=figsize, layout="constrained")
    fig.set_facecolor("white")
    return fig


def root_figure(ax: Axes) -> Figure:
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10
        return ax.figure


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig = new_figure(figsize)
        with figure_style():
            ax = fig.add_subplot()
    else:
        fig = root_figure(ax)
    # Opaque white even on caller-provided axes: see "Themes" in the module docstring.
    fig.set_facecolor("white")
    ax.set_facecolor("white")
    return fig, ax


def nice_step(n: int) -> int:
    for step in (1, 2, 4, 5, 10, 20, 25, 50, 100):
        if math.ceil(n / step) <= MAX_LAYER_TICKS:
            return step
    return math.ceil(n / MAX_LAYER_TICKS)


def layer_ticks(layers: Sequence[int]) -> list[int]:
    """Readable integer layer ticks: all of them up to 16, otherwise every 2nd / 4th / 5th ... layer."""
    u = sorted({int(v) for v in layers})
    step = nice_step(len(u))
    if step == 1:
        return u
    contiguous = u == list(range(u[0], u[-1] + 1))
    ticks = [v for v in u if v % step == 0] if contiguous else u[::step]
    return ticks if len(ticks) >= 2 else u[::step]


def set_layer_axis(ax: Axes, layers: Sequence[int], axis: str = "x") -> None:
    u = sorted({int(v) for v in layers})
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(layer_ticks(u)))
    target.set_minor_locator(FixedLocator(u))  # a small tick at every layer
    label = "layer (transformer block output)"
    if axis == "x":
        ax.set_xlabel(label)
    else:
        ax.set_ylabel(label)


def existing_artists(ax: Axes, gid: str) -> list:
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


def mark_classifier_layer(ax: Axes, layer: int | None) -> None:
    if layer is None or any(ln.get_xdata()[0] == layer for ln in existing_artists(ax, GID_CLS)):
        return
    ln = ax.axvline(layer, label=f"classifier layer {layer}", zorder=1.5, **CLS_LINE)
    ln.set_gid(GID_CLS)


def add_legend(ax: Axes, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, **kw)


def class_styles(names: Sequence[str]) -> dict[str, tuple[str, str]]:
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
    ax.set_facecolor("white")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=GREY, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor("#d0d0d0")
