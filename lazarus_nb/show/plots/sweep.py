"""The sweep's two figures from plain arrays (``figures.sweep_figures`` turns sweep rows into these calls), in
the style of :mod:`lazarus_nb.show.plots.style` (its white card, its figure class, its placeholder):

* :func:`trade_off`: lens top-1 at the classifier layer against each answer-half metric, one point per
  cls_weight, error bars in both directions;
* :func:`readable_heatmap`: steps to readable by classifier layer x cls_weight, "not readable" cells marked.

A value is NaN where it was not measured (e.g. ``--no-answers``); such points are left out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.style import INK, figure_style, new_figure, placeholder

SERIES_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe-Ito colours (colourblind-safe) for the series of a sweep (one per setting of the other grid fields)."""


_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


_NOT_READABLE = "#d4d4d4"


_LABEL_SIZE = 8.5


_LABEL_OFFSETS = ((5, 4), (5, -4), (-5, 4), (-5, -4), (5, 16), (5, -16), (-5, 16), (-5, -16), (5, 28), (5, -28))
"""Where a ``w=...`` label may sit, in points from its point (right/left, above/below), tried in turn."""


def _spread(name: str, values: Any, n: int) -> np.ndarray:
    """A (3, n) array: mean, lo, hi per point."""
    arr = np.asarray(values, dtype=float)
    if arr.shape != (3, n):
        raise ValueError(f"{name} must have shape (3, {n}) (mean, lo, hi per point), got {arr.shape}")
    finite = np.isfinite(arr).all(axis=0)
    if (arr[1, finite] > arr[0, finite] + 1e-12).any() or (arr[2, finite] < arr[0, finite] - 1e-12).any():
        raise ValueError(f"{name}: every point needs lo <= mean <= hi")
    return arr


def _weight_text(w: float) -> str:
    return f"{w:g}"


def trade_off(
    series: Mapping[str, Mapping[str, Any]],
    x_labels: Mapping[str, str],
    y_label: str,
    title: str = "Trade-off: a readable classifier against the answer half",
    note: str = "points: mean over seeds; bars: min..max over seeds",
    fractions: Collection[str] = (),
) -> Figure:
    """One panel per entry of ``x_labels`` (key -> axis label), the same y (a fraction: drawn on 0..1) in each;
    the x axes of the keys in ``fractions`` are drawn on 0..1 too, so no spread is blown up to fill the panel.

    ``series`` maps a label ("" for a single unnamed series) to ``{"cls_weight": (n,), "y": (3, n), key: (3, n)
    for each key of x_labels}``, where a (3, n) array holds each point's mean, lo and hi: the point is (mean x,
    mean y), its bars span lo..hi in both directions. Points are joined in cls_weight order; the first series'
    points are labelled ``w=...``. A panel with no measured point shows "not measured"."""
    checked = {}
    for label, s in series.items():
        w = check.vector(f"series {label!r} cls_weight", s["cls_weight"])
        checked[label] = (w, _spread(f"series {label!r} y", s["y"], w.size),
                          {k: _spread(f"series {label!r} {k}", s[k], w.size) for k in x_labels})
    with figure_style():
        fig = new_figure((4.6 * max(len(x_labels), 1) + 0.6, 4.6))
        axes = fig.subplots(1, max(len(x_labels), 1), sharey=True, squeeze=False)[0]
        labels = []
        for ax, (key, x_label) in zip(axes, x_labels.items()):
            drawn = _trade_off_panel(ax, checked, key)
            labels.append(drawn)
            if not drawn:
                placeholder(ax, x_label, "not measured\n(run without --no-answers)" if checked else
                             "no finished runs yet")
                continue
            ax.set_xlabel(x_label)
            ax.grid(True)
            if key in fractions:
                ax.set_xlim(-0.03, 1.03)
        axes[0].set_ylabel(y_label)
        axes[0].set_ylim(-0.03, 1.03)
        if any(label for label in checked) and any(ax.get_legend_handles_labels()[0] for ax in axes):
            axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        fig.suptitle(f"{title}\n({note})" if note else title)
        fig.draw_without_rendering()  # the final layout: where the points are on the page
        for ax, points in zip(axes, labels):
            _label_weights(ax, points)
    return fig


def _label_weights(ax: Axes, points: list[tuple[float, float, float, str]]) -> None:
    """A ``w=...`` label beside each (weight, x, y, colour) point, at the first place of :data:`_LABEL_OFFSETS`
    where it overlaps no label placed before it and stays inside the axes (points of nearby weights sit close
    together); where no place is both, one that overlaps no label."""
    area = ax.get_window_extent()
    placed = []
    for w, x, y, color in points:
        best = None
        for dx, dy in _LABEL_OFFSETS:
            text = ax.annotate(f"w={_weight_text(w)}", (x, y), xytext=(dx, dy), textcoords="offset points",
                               fontsize=_LABEL_SIZE, color=color, ha="left" if dx > 0 else "right",
                               va="bottom" if dy > 0 else "top")
            text.set_in_layout(False)  # placed on the final layout: it must not move the axes again
            box = text.get_window_extent()
            fit = (not any(box.overlaps(other) for other in placed),
                   area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1)
            if best is None or fit > best[0]:
                if best is not None:
                    best[1].remove()
                best = (fit, text, box)
            else:
                text.remove()
            if all(fit):
                break
        placed.append(best[2])


def _trade_off_panel(ax: Axes, series: Mapping[str, tuple], key: str) -> list[tuple[float, float, float, str]]:
    """Draw every series on one panel; the points the first drawn series labels with their weight (none: nothing
    was drawn)."""
    drawn = False
    labels: list[tuple[float, float, float, str]] = []
    for k, (label, (weights, y, xs)) in enumerate(series.items()):
        x = xs[key]
        keep = np.isfinite(x).all(axis=0) & np.isfinite(y).all(axis=0)
        if not keep.any():
            continue
        order = np.argsort(weights[keep])
        w, xk, yk = weights[keep][order], x[:, keep][:, order], y[:, keep][:, order]
        color = SERIES_COLORS[k % len(SERIES_COLORS)]
        ax.errorbar(xk[0], yk[0], xerr=[xk[0] - xk[1], xk[2] - xk[0]], yerr=[yk[0] - yk[1], yk[2] - yk[0]],
                    color=color, marker=_MARKERS[k % len(_MARKERS)], markersize=5, linewidth=1.4, capsize=3,
                    elinewidth=1.0, label=label or None)
        if not drawn:  # the first series says the weights
            labels = [(float(wi), float(xi), float(yi), color) for wi, xi, yi in zip(w, xk[0], yk[0])]
        drawn = True
    return labels


def readable_heatmap(
    panels: Mapping[str, Mapping[str, Any]],
    title: str = "Steps to readable by classifier layer and cls_weight",
) -> Figure:
    """One heatmap per entry of ``panels`` (label -> data; "" for a single unnamed one), sharing one colour scale.

    Each panel's data: ``cls_weight`` (m,), ``layers`` (k,), ``steps`` (k, m) the mean steps to readable over the
    seeds that became readable (NaN: none did, or no run), ``readable`` and ``runs`` (k, m) counts. Each cell
    says its mean, "k/n seeds" when not every seed became readable, "not readable" (grey) when none did."""
    checked = {}
    for label, p in panels.items():
        w = check.vector(f"panel {label!r} cls_weight", p["cls_weight"])
        layers = check.layers(p["layers"], f"panel {label!r} layers", increasing=True)
        grids = [check.grid(f"panel {label!r} {k}", p[k], layers.size, w.size) for k in ("steps", "readable", "runs")]
        checked[label] = (w, layers, *grids)
    finite = [v for _, _, steps, _, _ in checked.values() for v in steps[np.isfinite(steps)]]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    n = max(len(checked), 1)
    widest = max((w.size for w, *_ in checked.values()), default=3)
    tallest = max((lay.size for _, lay, *_ in checked.values()), default=3)
    with figure_style():
        fig = new_figure((max(n * (1.1 * widest + 2.2) + 1.4, 7.5), 0.55 * tallest + 2.6))
        axes = fig.subplots(1, n, squeeze=False)[0]
        if not checked:
            placeholder(axes[0], title, "no finished runs yet")
            return fig
        mesh = None
        for ax, (label, (w, layers, steps, readable, runs)) in zip(axes, checked.items()):
            mesh = _heatmap_panel(ax, w, layers, steps, readable, runs, vmin, vmax)
            if label:
                ax.set_title(label)
        if finite:  # with no run readable every cell is grey: a colour scale would mean nothing
            fig.colorbar(mesh, ax=list(axes), label="steps to readable", pad=0.02)
        fig.suptitle(f"{title}\n(mean over the seeds that got there; grey: none did)")
    return fig


def _heatmap_panel(ax: Axes, weights: np.ndarray, layers: np.ndarray, steps: np.ndarray, readable: np.ndarray,
                   runs: np.ndarray, vmin: float, vmax: float) -> Any:
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=_NOT_READABLE)
    edges_x, edges_y = np.arange(weights.size + 1) - 0.5, np.arange(layers.size + 1) - 0.5
    mesh = ax.pcolormesh(edges_x, edges_y, np.ma.masked_invalid(steps), cmap=cmap, vmin=vmin, vmax=vmax,
                         shading="flat")
    for i in range(layers.size):
        for j in range(weights.size):
            n, k = int(runs[i, j]), int(readable[i, j])
            if n == 0:
                text, dark = "no run", False
            elif k == 0:
                text, dark = "not\nreadable", False
            else:
                text = f"{steps[i, j]:.0f}" + (f"\n{k}/{n} seeds" if k < n else "")
                dark = (steps[i, j] - vmin) / (vmax - vmin) < 0.6  # viridis is dark at its low end
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else INK)
    ax.set_xticks(range(weights.size), [_weight_text(w) for w in weights])
    ax.set_yticks(range(layers.size), [str(v) for v in layers])
    ax.set_xlabel("cls_weight")
    ax.set_ylabel("classifier layer")
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    return mesh
