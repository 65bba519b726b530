"""Activation patching's figure, from arrays: layer x prompt-slot heatmaps, one column per model (the base model
beside the adapted one), one row per metric (the effect on the whole answer, on the first answer token, and the
fraction of pairs whose lens class follows the source). Layer 0 at the bottom, as in the emergence heatmap; the
operator's column outlined, the classifier layer dashed. Effects use a diverging map centred on 0 (the clean target
run) with 1 (the clean source run) at full colour; a cell without pairs is grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lazarus_nb.show.plots.style import GID_CLS, INK, figure_style, new_figure, set_layer_axis

MARK = "#ff7f00"  # the chosen cell's outline: visible on both ends of the diverging map
GID_MARK = "lazarus:patched_cell"


class HeatRow(NamedTuple):
    """One metric: its name, its colour scale, and one (layers, slots) array per model (NaN: no value)."""

    name: str
    values: Sequence[np.ndarray]
    vmin: float
    vmax: float
    cmap: str
    note: str = ""  # said under the colour bar


def patching_heatmaps(rows: Sequence[HeatRow], models: Sequence[str], slot_labels: Sequence[str],
                      operator_slot: int | None, classifier_layer: int | None, title: str,
                      mark: tuple[int, int] | None = None) -> Figure:
    """Heatmaps ``rows[i].values[j]`` (metric i, model j) over layers (y) and slots (x, labelled ``slot_labels``);
    ``mark``: one (layer, slot) cell outlined in every panel (the widget's chosen patch)."""
    if not rows or any(len(r.values) != len(models) for r in rows):
        raise ValueError("every metric needs one array per model")
    n_layers, n_slots = np.asarray(rows[0].values[0]).shape
    if len(slot_labels) != n_slots:
        raise ValueError(f"{len(slot_labels)} slot labels for {n_slots} slots")
    cell_w, cell_h = 0.42, 0.16
    fig = new_figure((len(models) * (n_slots * cell_w + 1.2) + 1.4, len(rows) * (n_layers * cell_h + 1.3) + 0.9))
    with figure_style():
        axes = fig.subplots(len(rows), len(models), squeeze=False)
        for i, row in enumerate(rows):
            image = None
            for j, model in enumerate(models):
                values = np.asarray(row.values[j], dtype=float)
                if values.shape != (n_layers, n_slots):
                    raise ValueError(f"{row.name} of {model}: shape {values.shape}, expected {(n_layers, n_slots)}")
                ax = axes[i][j]
                ax.set_facecolor("#d9d9d9")  # NaN cells: no pairs there
                image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap=row.cmap,
                                  vmin=row.vmin, vmax=row.vmax, interpolation="nearest",
                                  extent=(-0.5, n_slots - 0.5, -0.5, n_layers - 0.5))
                if operator_slot is not None:
                    ax.add_patch(Rectangle((operator_slot - 0.5, -0.5), 1, n_layers, fill=False, edgecolor=INK,
                                           linewidth=1.6))
                if mark is not None:
                    ax.add_patch(Rectangle((mark[1] - 0.5, mark[0] - 0.5), 1, 1, fill=False, edgecolor=MARK,
                                           linewidth=2.2, gid=GID_MARK))
                if classifier_layer is not None:
                    ax.axhline(classifier_layer, color=INK, linestyle="--", linewidth=1.0).set_gid(GID_CLS)
                ax.set_xticks(range(n_slots), list(slot_labels), fontsize=8)
                set_layer_axis(ax, range(n_layers), "y")
                ax.set_ylabel("layer" if j == 0 else "")
                ax.set_title(f"{model}: {row.name}", fontsize=9.5)
            bar = fig.colorbar(image, ax=list(axes[i]), shrink=0.9, pad=0.01, aspect=20)
            if row.note:
                bar.set_label(row.note, fontsize=8)
        for ax in axes[-1]:
            ax.set_xlabel("prompt position (target prompt's part; [..] the operator)")
        fig.suptitle(title, x=0.01, ha="left")
    return fig
