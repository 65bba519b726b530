"""The logit-lens grid figure, from plain arrays (:mod:`lazarus_nb.measure.lens_grid` computes them and
``figures.lens_grid_figure`` unpacks its results into :class:`GridPanel` rows).

Each panel: layers on y (layer 0 at the bottom, as in the emergence heatmap), prompt positions on x (the
prompt's own tokens below, the token that follows each position above: what a perfect prediction would be),
each cell the lens's top-1 token as text, coloured by its probability (viridis, 0 to 1; one colour bar for
the whole figure, so panels compare). Rows of panels are prompts; panels in a row are models (base, adapted).
Tokens are written as ``format.token`` writes them (``␣`` for a space, ``↵`` for a newline, escapes for other
invisible characters), so ``" 56"`` and ``"56"`` differ on the page; a character the font cannot draw shows as
``�`` instead of an empty box and a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font

from lazarus_nb.show.format import token
from lazarus_nb.show.plots.style import INK, figure_style, new_figure

_FONT = "DejaVu Sans"  # matplotlib's bundled default: always present, so the glyph check below is exact


_CELL_FONT_SIZE = 7.0


_CHAR_IN = 0.062  # inches per character at 7 pt (DejaVu Sans, average)


_ROW_IN = 0.24  # inches per layer row


_MAX_CHARS = 9  # token text longer than this is cut with "…"


_MIN_WIDTH_IN = 7.5  # room for the title over a short prompt's grid


_LIGHT_ABOVE = 0.55  # viridis is light (yellow-green) above ~0.55: dark text there, white text below


class GridPanel(NamedTuple):
    """One grid: ``probs`` and ``texts`` are (len(layers), len(tokens))."""

    title: str
    layers: Sequence[int]
    tokens: Sequence[str]  # the prompt token at each position (x axis, below)
    next_tokens: Sequence[str | None]  # the prompt token after each position (x axis, above; None: the end)
    texts: Sequence[Sequence[str]]  # the lens's top-1 token at each cell
    probs: np.ndarray  # its probability


@cache
def _drawable() -> frozenset[int]:
    return frozenset(FT2Font(font_manager.findfont(_FONT)).get_charmap())


def cell_text(tok: str, limit: int = _MAX_CHARS) -> str:
    """A token as the grid prints it: ``format.token`` cut to ``limit`` characters, with ``�`` for a character
    the font cannot draw."""
    return "".join(c if ord(c) in _drawable() else "\ufffd" for c in token(tok, limit))


def _check(i: int, j: int, p: GridPanel) -> np.ndarray:
    where = f"grid [{i}][{j}] ({p.title!r})"
    probs = np.asarray(p.probs, dtype=float)
    shape = (len(p.layers), len(p.tokens))
    if not shape[0] or not shape[1]:
        raise ValueError(f"{where} is empty: it needs at least one layer and one position")
    if probs.shape != shape or np.shape(np.asarray(p.texts, dtype=object)) != shape:
        raise ValueError(f"{where}: probs {probs.shape} and texts {np.shape(np.asarray(p.texts, dtype=object))} "
                         f"must both be (len(layers), len(tokens)) = {shape}")
    if len(p.next_tokens) != shape[1]:
        raise ValueError(f"{where}: next_tokens has {len(p.next_tokens)} entries but tokens has {shape[1]}")
    if not np.all((probs >= 0) & (probs <= 1 + 1e-6)):
        raise ValueError(f"{where}: probs must be probabilities in [0, 1]")
    return probs


def logit_lens_grid(
    rows: Sequence[Sequence[GridPanel]],
    title: str = "Logit lens: the top-1 token at every layer and prompt position\n(colour: its probability)",
) -> Figure:
    """A figure of grids: ``rows[i][j]`` is drawn in row i, column j (e.g. prompt i, model j)."""
    rows = [list(r) for r in rows]
    if not rows or not all(rows):
        raise ValueError("rows must hold at least one grid per row")
    probs = [[_check(i, j, p) for j, p in enumerate(r)] for i, r in enumerate(rows)]
    n_cols = max(len(r) for r in rows)
    chars = max(len(cell_text(t)) for r in rows for p in r for t in [*np.ravel(p.texts), *p.tokens])
    cell_w = min(max(chars * _CHAR_IN + 0.14, 0.42), _MAX_CHARS * _CHAR_IN + 0.14)
    widths = [max(len(r[j].tokens) for r in rows if j < len(r)) * cell_w + 0.9 for j in range(n_cols)]
    heights = [max(len(p.layers) for p in r) * _ROW_IN + 1.3 for r in rows]
    fig = new_figure((max(sum(widths) + 1.2, _MIN_WIDTH_IN), sum(heights) + 0.8))
    with figure_style():
        axes = fig.subplots(len(rows), n_cols, squeeze=False, width_ratios=widths, height_ratios=heights)
        image = None
        for i, r in enumerate(rows):
            for j in range(n_cols):
                if j < len(r):
                    image = _draw_panel(axes[i][j], r[j], probs[i][j])
                else:
                    axes[i][j].set_axis_off()  # a row with fewer models than the widest one
        fig.colorbar(image, ax=axes, label="P(top-1 token)", shrink=min(1.0, 4.0 / sum(heights)), pad=0.01,
                     aspect=15)
        # left-aligned: the grid is shown at its own width in a tab that scrolls sideways, so a centred title
        # starts off screen
        fig.suptitle(title, x=0.01, ha="left")
    return fig


def _draw_panel(ax, p: GridPanel, probs: np.ndarray):
    n_layers, n_pos = probs.shape
    image = ax.imshow(probs, origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                      interpolation="nearest", extent=(-0.5, n_pos - 0.5, -0.5, n_layers - 0.5))
    for y in range(n_layers):
        for x in range(n_pos):
            ax.text(x, y, cell_text(str(p.texts[y][x])), ha="center", va="center", fontsize=_CELL_FONT_SIZE,
                    family=_FONT, color=INK if probs[y, x] > _LIGHT_ABOVE else "white", clip_on=True)
    ax.set_yticks(range(n_layers), [str(v) for v in p.layers], fontsize=7.5)
    ax.set_ylabel("layer")
    below = [cell_text(t) for t in p.tokens]
    above = ["" if t is None else cell_text(t) for t in p.next_tokens]
    rotation = 0 if max(len(s) for s in below + above) * _CHAR_IN <= 0.5 else 45
    ax.set_xticks(range(n_pos), below, fontsize=7.5, family=_FONT, rotation=rotation,
                  ha="right" if rotation else "center", rotation_mode="anchor")
    ax.set_xlabel("prompt token (input at that position)")
    top = ax.secondary_xaxis("top")
    top.set_xticks(range(n_pos), above, fontsize=7.5, family=_FONT, rotation=rotation,
                   ha="left" if rotation else "center", rotation_mode="anchor")
    top.set_xlabel("next prompt token (what the last layer should predict)", fontsize=8)
    ax.set_title(p.title, fontsize=9.5)
    ax.tick_params(length=0)
    for side in ("top", "right"):
        ax.spines[side].set_visible(True)
    return image
