"""Logit-lens figures from arrays: class-token probability by layer, before/after, top tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lazarus_nb.show.format import clip, prob, token
from lazarus_nb.show.plots import inputs as check
from lazarus_nb.show.plots.style import (
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
)


def _draw_lens(ax: Axes, lay: np.ndarray, probs: Mapping[str, np.ndarray], cls: int | None, log: bool,
               legend: bool = True) -> None:
    styles = class_styles(list(probs))
    order = np.argsort(lay)
    for name, p in probs.items():
        color, marker = styles[name]
        ax.plot(lay[order], p[order], color=color, marker=marker, markersize=4, linewidth=2, label=name,
                zorder=3)
    mark_classifier_layer(ax, cls)
    set_layer_axis(ax, lay, "x")
    ax.set_xlim(lay.min() - 0.5, lay.max() + 0.5)
    if log:
        ax.set_yscale("log")
        log_ylim(ax, probs.values())
    else:
        ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("P(class token) at the last prompt token\n(mean over prompts of that class)")
    ax.grid(True, axis="y", which="major")
    if legend:
        add_legend(ax, loc="best", title="class")


def _prob_map(name: str, probs, n: int) -> dict[str, np.ndarray]:
    if not isinstance(probs, Mapping):
        raise ValueError(f"{name} must be a mapping class name -> per-layer probabilities")
    if not probs:
        raise ValueError(f"{name} is empty; give at least one class")
    return {str(k): check.probabilities(f"{name}[{k!r}]", probs[k], n) for k in ordered_classes(probs)}


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
    with figure_style():
        fig, ax = new_axes(ax, (7.5, 4.2))
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
    fig = new_figure((12.5, 4.6))
    with figure_style():
        ax0, ax1 = fig.subplots(1, 2, sharey=True)
        _draw_lens(ax0, lay, b, cls, True, legend=False)
        _draw_lens(ax1, lay, a, cls, True, legend=True)
        # shared y: each _draw_lens set limits from its own data and the second call won, so take the lower
        # limit from both panels' data (the base model's probabilities are orders of magnitude smaller)
        log_ylim(ax0, [*b.values(), *a.values()])
        ax1.set_ylabel("")
        ax1.tick_params(labelleft=True)
        ax0.set_title("Before training (base model)")
        ax1.set_title("After training (adapter loaded from disk)")
        fig.suptitle("Logit lens: class-token probability by layer, before vs after dual-reward training")
    return fig


PROMPT_LIMIT = 24
"""Characters of a prompt's ``repr`` the table shows."""


def top_tokens_table(
    rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    title: str = "Logit lens: top tokens per prompt",
) -> Figure:
    """A compact table figure: one row per prompt, its top-k logit-lens tokens with probabilities.

    Prompts are shown with ``repr`` and tokens with ``format.token`` (``␣`` for a space, ``↵`` for a newline), so
    leading spaces and newlines are visible; probabilities as ``format.prob`` writes them.
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
        [clip(repr(prompt), PROMPT_LIMIT)] + [f"{token(t)}  {prob(p)}" for t, p in toks]
        + [""] * (k - len(toks))
        for prompt, toks in parsed
    ]
    # Size the figure from the text: ~0.078 in per monospace character at 9 pt, plus cell padding.
    widths = [max(len(header[j]), *(len(r[j]) for r in cells)) * 0.078 + 0.22 for j in range(k + 1)]
    row_h = 0.3
    fig = new_figure((max(sum(widths) + 0.2, 4.0), 0.55 + row_h * (len(parsed) + 1)))
    with figure_style():
        ax = fig.add_subplot()
        ax.set_axis_off()
        table = ax.table(cellText=cells, colLabels=header, cellLoc="left", colLoc="left",
                         colWidths=[w / sum(widths) for w in widths], bbox=[0.0, 0.0, 1.0, 1.0])
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        for (r, _c), cell in table.get_celld().items():
            cell.set_edgecolor("#d0d0d0")
            cell.set_text_props(family="monospace", color=INK)
            if r == 0:
                cell.set_facecolor("#eeeeee")
                cell.set_text_props(weight="bold", family="sans-serif")
            else:
                cell.set_facecolor("white" if r % 2 else "#f6f6f6")
        ax.set_title(title, loc="left")
    return fig
