"""The probe-accuracy figure, from arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lazarus_nb.show.format import pct
from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.style import (
    GID_CHANCE,
    GID_CONTROL,
    GID_PROBE,
    GREY,
    OTHER_COLORS,
    PROBE_MARKERS,
    add_legend,
    existing_artists,
    figure_style,
    mark_classifier_layer,
    new_axes,
    set_layer_axis,
)

CONTROL_STYLES = ("--", "-.")
"""Line styles of the families' shuffled-label controls, in turn: grey lines told apart by their dashes, not by
their small markers alone (chance is dotted)."""


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

    ``control`` (shuffled-label probe) is drawn as a grey dashed line (a family's own dashes:
    :data:`CONTROL_STYLES`) with its own band, ``chance`` as a
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

    with figure_style():
        fig, ax = new_axes(ax, (9.5, 4.4))  # wider: the legend sits outside the axes
        k = len(existing_artists(ax, GID_PROBE))
        color = OTHER_COLORS[k % 3]  # orange, sky blue, black
        marker = PROBE_MARKERS[k % len(PROBE_MARKERS)]
        ax.fill_between(lay, acc - sd, acc + sd, color=color, alpha=0.2, linewidth=0, zorder=2)
        (ln,) = ax.plot(lay, acc, color=color, marker=marker, markersize=4, linewidth=2, label=label,
                        zorder=3)
        ln.set_gid(GID_PROBE)
        if ctl is not None:
            ctl_label = "shuffled-label control" if label == "probe" else f"shuffled-label control ({label})"
            if ctl_sd is not None:
                ax.fill_between(lay, ctl - ctl_sd, ctl + ctl_sd, color=GREY, alpha=0.15, linewidth=0,
                                zorder=2)
            (cl,) = ax.plot(
                lay, ctl, color=GREY, linestyle=CONTROL_STYLES[k % len(CONTROL_STYLES)], marker=marker,
                markersize=3.5, markerfacecolor="white", linewidth=1.4, label=ctl_label, zorder=2.5,
            )
            cl.set_gid(GID_CONTROL)
        if chance is not None and not any(c.get_ydata()[0] == chance for c in existing_artists(ax, GID_CHANCE)):
            ch = ax.axhline(chance, color=GREY, linestyle=":", linewidth=1.3, label=f"chance ({pct(chance, 0)})")
            ch.set_gid(GID_CHANCE)
        mark_classifier_layer(ax, cls)

        all_layers = sorted({int(v) for p in existing_artists(ax, GID_PROBE) for v in p.get_xdata()})
        set_layer_axis(ax, all_layers, "x")
        ax.set_xlim(min(all_layers) - 0.5, max(all_layers) + 0.5)
        ax.set_ylim(-0.02, 1.04)
        ax.set_ylabel("cross-validated accuracy")
        ax.set_title(title)
        ax.grid(True, axis="y")
        # outside the axes: probe and control curves can sit anywhere in [0, 1]
        add_legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig
