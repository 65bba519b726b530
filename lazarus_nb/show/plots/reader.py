"""The reader-only baseline's figure, from arrays: per layer, the held-out full-vocab top-1 accuracy of the trained
reader with its 95% interval, beside the plain logit lens's (the same reader at step 0), and the readable threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from lazarus_nb.show.format import pct
from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.style import (
    GREY,
    OTHER_COLORS,
    figure_style,
    mark_classifier_layer,
    new_axes,
    set_layer_axis,
)


def _interval(name: str, ci: Sequence[Sequence[float]], values: np.ndarray) -> np.ndarray:
    """A (2, n) array of [lo, hi] per layer, each around its value."""
    arr = np.asarray(ci, dtype=float)
    if arr.shape != (values.size, 2):
        raise ValueError(f"{name} must hold one [lo, hi] per layer, shape ({values.size}, 2), got {arr.shape}")
    lo, hi = arr.T
    if (lo > values + 1e-12).any() or (hi < values - 1e-12).any():
        raise ValueError(f"{name}: every interval must contain its accuracy")
    return np.stack([values - lo, hi - values])


def reader_accuracy(
    layers: Sequence[int],
    reader: Sequence[float],
    reader_ci: Sequence[Sequence[float]],
    plain: Sequence[float],
    plain_ci: Sequence[Sequence[float]],
    readable: float,
    classifier_layer: int | None = None,
    title: str = "Reader-only baseline: the class read through a trained reader on the frozen model",
    n: int | None = None,
) -> Figure:
    """Full-vocab top-1 accuracy by layer: the trained reader and the plain logit lens, each with its 95% interval
    (``*_ci``: one [lo, hi] per layer), a dotted line at ``readable``, the classifier layer marked. ``n``: the
    problems the accuracies are fractions of (said on the y axis)."""
    lay = check.layers(layers)
    acc = check.probabilities("reader", reader, lay.size)
    base = check.probabilities("plain", plain, lay.size)
    acc_err, base_err = _interval("reader_ci", reader_ci, acc), _interval("plain_ci", plain_ci, base)
    cls = check.classifier(classifier_layer, lay)
    if not 0 < readable <= 1:
        raise ValueError(f"readable must be an accuracy in (0, 1], got {readable}")
    order = np.argsort(lay)
    with figure_style():
        fig, ax = new_axes(None, (9.5, 4.4))  # wide: the legend sits outside the axes
        ax.errorbar(lay[order], acc[order], yerr=acc_err[:, order], color=OTHER_COLORS[0], marker="o", markersize=4,
                    linewidth=2, capsize=2.5, elinewidth=0.9, label="trained reader", zorder=3)
        ax.errorbar(lay[order], base[order], yerr=base_err[:, order], color=GREY, marker="s", markersize=4,
                    markerfacecolor="white", linewidth=1.4, linestyle="--", capsize=2.5, elinewidth=0.9,
                    label="plain logit lens (step 0)", zorder=2.5)
        ax.axhline(readable, color=GREY, linestyle=":", linewidth=1.3, label=f"readable ({pct(readable, 0)})")
        mark_classifier_layer(ax, cls)
        set_layer_axis(ax, lay, "x")
        ax.set_xlim(lay.min() - 0.5, lay.max() + 0.5)
        ax.set_ylim(-0.03, 1.03)
        of = f" of {n}" if n is not None else ""
        ax.set_ylabel(f"held-out full-vocab top-1{of}\n(bars: 95% Wilson interval)")
        ax.set_title(title)
        ax.grid(True, axis="y")
        # outside the axes: the curves can sit anywhere in [0, 1]; the two curves first (errorbar containers are
        # listed after plain lines)
        handles, labels = ax.get_legend_handles_labels()
        first = [i for i, h in enumerate(handles) if isinstance(h, ErrorbarContainer)]
        keep = first + [i for i in range(len(handles)) if i not in first]
        ax.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0)
    return fig
