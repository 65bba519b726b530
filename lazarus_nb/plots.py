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

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator

from . import plot_inputs as check
from .atomic import atomic_file

__all__ = [
    "CLASS_COLORS",
    "CLASS_MARKERS",
    "Dashboard",
    "NotebookFigure",
    "emergence_curves",
    "emergence_heatmap",
    "lens_before_after",
    "lens_probability",
    "loss_curves",
    "png_bytes",
    "probe_accuracy",
    "save",
    "top_tokens_table",
    "training_dashboard",
]

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
_OTHER_COLORS = ("#E69F00", "#56B4E9", "#000000", "#F0E442")
_EXTRA_MARKERS = ("v", "P", "X", "*", "h")
_PROBE_MARKERS = ("o", "s", "^", "D", "v")
_INK = "#1a1a1a"
_GREY = "#7f7f7f"
_CLS_LINE = dict(color=_INK, linestyle="--", linewidth=1.3)
_GID_CLS = "lazarus:classifier_layer"
_GID_CHANCE = "lazarus:chance"
_GID_PROBE = "lazarus:probe"
_GID_CONTROL = "lazarus:control"
_MAX_LAYER_TICKS = 16


def _step_locator() -> MaxNLocator:
    return MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10], integer=True)

_RC = {
    "figure.facecolor": "white",
    "figure.edgecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.edgecolor": "white",
    "savefig.transparent": False,
    "text.color": _INK,
    "axes.labelcolor": _INK,
    "axes.titlecolor": _INK,
    "axes.edgecolor": "#555555",
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "xtick.labelcolor": _INK,
    "ytick.labelcolor": _INK,
    "legend.facecolor": "white",
    "legend.edgecolor": "#cccccc",
    "legend.labelcolor": _INK,
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


def _style():
    return matplotlib.rc_context(_RC)


def png_bytes(fig: Figure) -> bytes:
    """``fig`` as PNG bytes for display: cropped to its content, on its own (opaque) background."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=fig.get_facecolor(), bbox_inches="tight")
    return buf.getvalue()


class NotebookFigure(Figure):
    """A plain ``Figure`` that Jupyter can show without the inline backend (see module docstring)."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def _new_figure(figsize: tuple[float, float]) -> NotebookFigure:
    with _style():
        fig = NotebookFigure(figsize=figsize, layout="constrained")
    fig.set_facecolor("white")
    return fig


def _root_figure(ax: Axes) -> Figure:
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10
        return ax.figure


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig = _new_figure(figsize)
        with _style():
            ax = fig.add_subplot()
    else:
        fig = _root_figure(ax)
    # Opaque white even on caller-provided axes: see "Themes" in the module docstring.
    fig.set_facecolor("white")
    ax.set_facecolor("white")
    return fig, ax


# ------------------------------------------------------------------------------------------------ axes


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


def _set_layer_axis(ax: Axes, layers: Sequence[int], axis: str = "x") -> None:
    u = sorted({int(v) for v in layers})
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(_layer_ticks(u)))
    target.set_minor_locator(FixedLocator(u))  # a small tick at every layer
    label = "layer (transformer block output)"
    if axis == "x":
        ax.set_xlabel(label)
    else:
        ax.set_ylabel(label)


def _existing(ax: Axes, gid: str) -> list:
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid]


def _mark_classifier_v(ax: Axes, layer: int | None) -> None:
    if layer is None or any(ln.get_xdata()[0] == layer for ln in _existing(ax, _GID_CLS)):
        return
    ln = ax.axvline(layer, label=f"classifier layer {layer}", zorder=1.5, **_CLS_LINE)
    ln.set_gid(_GID_CLS)


def _legend(ax: Axes, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, **kw)


def _class_styles(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    extra = 0
    for name in names:
        if name in CLASS_COLORS:
            out[name] = (CLASS_COLORS[name], CLASS_MARKERS[name])
        else:
            color = _OTHER_COLORS[extra % len(_OTHER_COLORS)]
            out[name] = (color, _EXTRA_MARKERS[extra % len(_EXTRA_MARKERS)])
            extra += 1
    return out


def _ordered(names) -> list[str]:
    """Known classes in the canonical order first, then any others in the given order."""
    names = list(names)
    return [c for c in CLASS_COLORS if c in names] + [n for n in names if n not in CLASS_COLORS]


# ------------------------------------------------------------------------------------------------ plots


def probe_accuracy(
    layers: Sequence[int],
    accuracy: Sequence[float],
    std: Sequence[float],
    control: Sequence[float] | None = None,
    control_std: Sequence[float] | None = None,
    label: str = "probe",
    chance: float | None = None,
    classifier_layer: int | None = None,
    ax: Axes | None = None,
    title: str = "Linear probe accuracy by layer",
) -> Figure:
    """Cross-validated probe accuracy per layer, with a +-std band.

    ``control`` (shuffled-label probe) is drawn as a grey dashed line with its own band, ``chance`` as a
    dotted line. Call again with the same ``ax`` and another ``label`` to overlay a second prompt family
    (e.g. symbolic vs word prompts); chance and classifier markers are not duplicated, and the same figure
    is returned.
    """
    lay = check.layers(layers)
    n = lay.size
    acc = check.vector("accuracy", accuracy)
    check.same_length("accuracy", acc, n, "layers")
    sd = check.vector("std", std)
    check.same_length("std", sd, n, "layers")
    ctl = ctl_sd = None
    if control is not None:
        ctl = check.vector("control", control)
        check.same_length("control", ctl, n, "layers")
        if control_std is not None:
            ctl_sd = check.vector("control_std", control_std)
            check.same_length("control_std", ctl_sd, n, "layers")
    elif control_std is not None:
        raise ValueError("control_std was given without control")
    cls = check.classifier(classifier_layer, lay)
    if chance is not None and not 0 <= chance <= 1:
        raise ValueError(f"chance must be an accuracy in [0, 1], got {chance}")

    order = np.argsort(lay)
    lay, acc, sd = lay[order], acc[order], sd[order]
    if ctl is not None:
        ctl = ctl[order]
        ctl_sd = ctl_sd[order] if ctl_sd is not None else None

    with _style():
        fig, ax = _new_axes(ax, (9.5, 4.4))  # wider: the legend sits outside the axes
        k = len(_existing(ax, _GID_PROBE))
        color = _OTHER_COLORS[k % 3]  # orange, sky blue, black
        marker = _PROBE_MARKERS[k % len(_PROBE_MARKERS)]
        ax.fill_between(lay, acc - sd, acc + sd, color=color, alpha=0.2, linewidth=0, zorder=2)
        (ln,) = ax.plot(lay, acc, color=color, marker=marker, markersize=4, linewidth=2, label=label,
                        zorder=3)
        ln.set_gid(_GID_PROBE)
        if ctl is not None:
            ctl_label = "shuffled-label control" if label == "probe" else f"shuffled-label control ({label})"
            if ctl_sd is not None:
                ax.fill_between(lay, ctl - ctl_sd, ctl + ctl_sd, color=_GREY, alpha=0.15, linewidth=0,
                                zorder=2)
            (cl,) = ax.plot(
                lay, ctl, color=_GREY, linestyle="--", marker=marker, markersize=3.5, markerfacecolor="white",
                linewidth=1.4, label=ctl_label, zorder=2.5,
            )
            cl.set_gid(_GID_CONTROL)
        if chance is not None and not any(c.get_ydata()[0] == chance for c in _existing(ax, _GID_CHANCE)):
            ch = ax.axhline(chance, color=_GREY, linestyle=":", linewidth=1.3, label=f"chance ({chance:.0%})")
            ch.set_gid(_GID_CHANCE)
        _mark_classifier_v(ax, cls)

        all_layers = sorted({int(v) for p in _existing(ax, _GID_PROBE) for v in p.get_xdata()})
        _set_layer_axis(ax, all_layers, "x")
        ax.set_xlim(min(all_layers) - 0.5, max(all_layers) + 0.5)
        ax.set_ylim(-0.02, 1.04)
        ax.set_ylabel("cross-validated accuracy")
        ax.set_title(title)
        ax.grid(True, axis="y")
        # outside the axes: probe and control curves can sit anywhere in [0, 1]
        _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def _draw_lens(ax: Axes, lay: np.ndarray, probs: Mapping[str, np.ndarray], cls: int | None, log: bool,
               legend: bool = True) -> None:
    styles = _class_styles(list(probs))
    order = np.argsort(lay)
    for name, p in probs.items():
        color, marker = styles[name]
        ax.plot(lay[order], p[order], color=color, marker=marker, markersize=4, linewidth=2, label=name,
                zorder=3)
    _mark_classifier_v(ax, cls)
    _set_layer_axis(ax, lay, "x")
    ax.set_xlim(lay.min() - 0.5, lay.max() + 0.5)
    if log:
        ax.set_yscale("log")
        _log_ylim(ax, probs.values())
    else:
        ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("P(class token) at the last prompt token\n(mean over prompts of that class)")
    ax.grid(True, axis="y", which="major")
    if legend:
        _legend(ax, loc="best", title="class")


def _log_ylim(ax: Axes, series) -> None:
    """Log y-limits: from the decade below the smallest positive value (floor 1e-30, so base-model
    probabilities are not clipped) to 1.5."""
    positive = [v for p in series for v in np.asarray(p, dtype=float) if np.isfinite(v) and v > 0]
    lo = min(positive) if positive else 1e-6
    ax.set_ylim(max(10 ** math.floor(math.log10(lo)), 1e-30), 1.5)


def _prob_map(name: str, probs, n: int) -> dict[str, np.ndarray]:
    if not isinstance(probs, Mapping):
        raise ValueError(f"{name} must be a mapping class name -> per-layer probabilities")
    if not probs:
        raise ValueError(f"{name} is empty; give at least one class")
    return {str(k): check.probabilities(f"{name}[{k!r}]", probs[k], n) for k in _ordered(probs)}


def lens_probability(
    layers: Sequence[int],
    probs: Mapping[str, Sequence[float]],
    classifier_layer: int | None = None,
    ax: Axes | None = None,
    title: str = "Logit lens: class-token probability by layer",
    log: bool = True,
) -> Figure:
    """One line per class: mean logit-lens probability of that class's token on prompts of that class.

    Log y-axis by default (baseline probabilities are around 1e-6).
    """
    lay = check.layers(layers)
    pm = _prob_map("probs", probs, lay.size)
    cls = check.classifier(classifier_layer, lay)
    with _style():
        fig, ax = _new_axes(ax, (7.5, 4.2))
        _draw_lens(ax, lay, pm, cls, log)
        ax.set_title(title)
    return fig


def lens_before_after(
    layers: Sequence[int],
    before: Mapping[str, Sequence[float]],
    after: Mapping[str, Sequence[float]],
    classifier_layer: int | None = None,
) -> Figure:
    """Two panels sharing the (log) y-axis: the base model and the adapter loaded from disk."""
    lay = check.layers(layers)
    b = _prob_map("before", before, lay.size)
    a = _prob_map("after", after, lay.size)
    if set(b) != set(a):
        raise ValueError(f"before and after must have the same classes, got {sorted(b)} vs {sorted(a)}")
    cls = check.classifier(classifier_layer, lay)
    fig = _new_figure((12.5, 4.6))
    with _style():
        ax0, ax1 = fig.subplots(1, 2, sharey=True)
        _draw_lens(ax0, lay, b, cls, True, legend=False)
        _draw_lens(ax1, lay, a, cls, True, legend=True)
        # shared y: each _draw_lens set limits from its own data and the second call won, so take the lower
        # limit from both panels' data (the base model's probabilities are orders of magnitude smaller)
        _log_ylim(ax0, [*b.values(), *a.values()])
        ax1.set_ylabel("")
        ax1.tick_params(labelleft=True)
        ax0.set_title("Before training (base model)")
        ax1.set_title("After training (adapter loaded from disk)")
        fig.suptitle("Logit lens: class-token probability by layer, before vs after dual-reward training")
    return fig


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
    with _style():
        fig, ax = _new_axes(ax, (7.5, 5.0))
        mesh = ax.pcolormesh(_edges(st), _edges(lay.astype(float)), vals, vmin=vmin, vmax=vmax,
                             cmap="viridis", shading="flat")
        fig.colorbar(mesh, ax=ax, label=cbar_label, pad=0.02)
        if cls is not None:
            ln = ax.axhline(cls, color="white", linestyle="--", linewidth=1.6,
                            label=f"classifier layer {cls}")
            ln.set_path_effects([patheffects.withStroke(linewidth=3.2, foreground=_INK)])
            ln.set_gid(_GID_CLS)
            # A text label instead of a legend entry (a stroked dash renders as "==" in a legend). It sits at
            # the left end, over the early steps, which are usually the least interesting cells.
            ax.annotate(f"classifier layer {cls}", xy=(0.0, cls), xycoords=("axes fraction", "data"),
                        xytext=(4, 3), textcoords="offset points", ha="left", va="bottom", color="white",
                        fontsize=8.5, fontweight="bold",
                        path_effects=[patheffects.withStroke(linewidth=2.5, foreground=_INK)])
        _set_layer_axis(ax, lay, "y")
        if st.size <= 12:
            ax.xaxis.set_major_locator(FixedLocator(st.tolist()))
        else:
            ax.xaxis.set_major_locator(_step_locator())
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
    with _style():
        fig, ax = _new_axes(ax, (7.5, 4.5))
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
                color, lw, lab = next(others, _GREY), 1.8, f"layer {layer}"
            ax.plot(st, vals[i], color=color, linewidth=lw, marker=marker, markersize=3.5, label=lab,
                    zorder=3)
        ax.xaxis.set_major_locator(_step_locator())
        if st.size == 1:
            ax.set_xlim(st[0] - 1, st[0] + 1)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, axis="y")
        _legend(ax, loc="best")
    return fig


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
    with _style():
        fig, ax = _new_axes(ax, (7.5, 4.0))
        marker = "o" if st.size <= 30 else None
        labels = ("total (weighted)", "classification (logit lens, classifier layer)", "answer (final layer)")
        colors = (_INK, "#E69F00", "#56B4E9")
        widths = (2.4, 1.6, 1.6)
        for v, lab, c, w in zip(series, labels, colors, widths, strict=True):
            ax.plot(st, v, color=c, linewidth=w, label=lab, marker=marker, markersize=3)
        ax.xaxis.set_major_locator(_step_locator())
        if st.size == 1:
            ax.set_xlim(st[0] - 1, st[0] + 1)
        ax.set_xlabel("training step")
        ax.set_ylabel("loss (cross-entropy, nats)")
        ax.set_title(title)
        ax.grid(True, axis="y")
        _legend(ax, loc="upper right")
    return fig


def _token_repr(tok, limit: int = 18) -> str:
    s = repr(tok) if isinstance(tok, str) else str(tok)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _prob_text(p: float) -> str:
    if not np.isfinite(p):
        return "nan"
    return f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"


def top_tokens_table(
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    title: str = "Logit lens: top tokens per prompt",
) -> Figure:
    """A compact table figure: one row per prompt, its top-k logit-lens tokens with probabilities.

    Prompts and tokens are shown with ``repr`` so leading spaces and newlines are visible.
    """
    rows = list(rows) if rows is not None else []
    if not rows:
        raise ValueError("rows is empty; give (prompt, [(token, prob), ...]) pairs")
    parsed: list[tuple[str, list[tuple[str, float]]]] = []
    for i, row in enumerate(rows):
        try:
            prompt, toks = row
            toks = [(t, float(p)) for t, p in toks]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rows[{i}] must be (prompt, [(token, prob), ...]): {exc}") from None
        if not toks:
            raise ValueError(f"rows[{i}] ({prompt!r}) has no tokens")
        parsed.append((str(prompt), toks))
    k = max(len(t) for _, t in parsed)
    header = ["prompt"] + [f"#{j + 1}" for j in range(k)]
    cells = [
        [_token_repr(prompt, 24)] + [f"{_token_repr(t)}  {_prob_text(p)}" for t, p in toks]
        + [""] * (k - len(toks))
        for prompt, toks in parsed
    ]
    # Size the figure from the text: ~0.078 in per monospace character at 9 pt, plus cell padding.
    widths = [max(len(header[j]), *(len(r[j]) for r in cells)) * 0.078 + 0.22 for j in range(k + 1)]
    row_h = 0.3
    fig = _new_figure((max(sum(widths) + 0.2, 4.0), 0.55 + row_h * (len(parsed) + 1)))
    with _style():
        ax = fig.add_subplot()
        ax.set_axis_off()
        table = ax.table(cellText=cells, colLabels=header, cellLoc="left", colLoc="left",
                         colWidths=[w / sum(widths) for w in widths], bbox=[0.0, 0.0, 1.0, 1.0])
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        for (r, _c), cell in table.get_celld().items():
            cell.set_edgecolor("#d0d0d0")
            cell.set_text_props(family="monospace", color=_INK)
            if r == 0:
                cell.set_facecolor("#eeeeee")
                cell.set_text_props(weight="bold", family="sans-serif")
            else:
                cell.set_facecolor("white" if r % 2 else "#f6f6f6")
        ax.set_title(title, loc="left")
    return fig


class Dashboard:
    """Live figure for training: left loss curves, right emergence heatmap.

    ``update`` clears and redraws the axes IN PLACE on the same :attr:`fig` (never a new figure), so a live
    display (``widgets.FigureSlot``) shows one figure for a whole run; ``figures.update_dashboard`` feeds it
    a training ``History``. Empty histories (before the first step / first snapshot) draw a "waiting"
    placeholder instead of raising; mismatched shapes still raise ``ValueError``.
    """

    def __init__(self, fig: Figure | None = None):
        self.fig: Figure = fig if fig is not None else _new_figure((13.0, 4.8))
        self.fig.set_facecolor("white")
        self.update([], [], [], [], [], [], np.zeros((0, 0)))

    def update(
        self, steps, total, cls_loss, ans_loss, snap_steps, layers, values, classifier_layer=None
    ) -> None:
        fig = self.fig
        fig.clear()
        with _style():
            ax_loss, ax_heat = fig.subplots(1, 2, width_ratios=[1.0, 1.15])
            fig.set_facecolor("white")
            if len(steps) == 0 and len(total) == 0:
                _placeholder(ax_loss, "Dual-reward training loss", "waiting for the first training step")
            else:
                loss_curves(steps, total, cls_loss, ans_loss, ax=ax_loss, title="Dual-reward training loss")
            if len(snap_steps) == 0 and np.size(values) == 0:
                _placeholder(ax_heat, "Classifier emergence", "waiting for the first logit-lens snapshot")
            else:
                emergence_heatmap(snap_steps, layers, values, classifier_layer=classifier_layer, ax=ax_heat,
                                  title="Classifier emergence: P(correct class token)")
            last = f"step {int(steps[-1])}" if len(steps) else "not started"
            fig.suptitle(f"Training dashboard ({last})")


def _placeholder(ax: Axes, title: str, text: str) -> None:
    ax.set_facecolor("white")
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color=_GREY, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor("#d0d0d0")


def training_dashboard(fig: Figure | None = None) -> Dashboard:
    """Create a :class:`Dashboard` (on ``fig`` if given, else a new :class:`NotebookFigure`)."""
    return Dashboard(fig)


def save(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` atomically (temp file in the same directory, then ``os.replace``); returns the path.

    The format follows the suffix (``.png``, ``.svg``, ``.pdf``...); no suffix means PNG. Parent directories
    are created. The pixel size is exactly ``figsize * dpi`` (no tight bbox), with an opaque background.
    """
    if not isinstance(fig, Figure):
        raise ValueError(f"save() needs a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi, facecolor=fig.get_facecolor())
    return path
