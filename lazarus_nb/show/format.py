"""How numbers and tokens are written: one rule each for accuracies (:func:`pct`), probabilities (:func:`prob`),
tokens (:func:`token`), text cut to a width (:func:`clip`) and layers (:func:`depth`, :func:`format_layers`),
used alike by the CLI's text, the figures and the widgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SCIENTIFIC_BELOW = 1e-4
"""Probabilities below this (0.01%) are written in scientific notation (:func:`prob`)."""

TOKEN_LIMIT = 14
"""How many characters of a token tables show (:func:`token`)."""

VISIBLE = {" ": "␣", "\n": "↵"}
"""The characters a token shows as a symbol; other invisible characters show as their Python escape."""


def _missing(v: float | None) -> bool:
    return v is None or not math.isfinite(v)


def pct(p: float | None, digits: int = 1) -> str:
    """An accuracy (a fraction) as a percentage with ``digits`` decimals: 0.875 -> ``87.5%``; ``n/a`` for None,
    NaN or infinite."""
    if _missing(p):
        return "n/a"
    return f"{100 * p:.{digits}f}%"


def prob(p: float | None) -> str:
    """A probability, in one notation wherever it is shown (lens probabilities span 1 down to ~1e-12):

    * 1% and above: a percentage with one decimal: 0.991 -> ``99.1%``, 1 -> ``100.0%``;
    * below 1%, down to 0.01% (:data:`SCIENTIFIC_BELOW`): a percentage with two significant digits:
      0.0049 -> ``0.49%``, 0.0001 -> ``0.010%``;
    * below 0.01%: the probability itself (not a percentage) in scientific notation, two significant digits:
      3.37e-13 -> ``3.4e-13``;
    * 0 -> ``0%``; None, NaN or infinite -> ``n/a``.
    """
    if _missing(p):
        return "n/a"
    p = float(p)
    if p == 0:
        return "0%"
    if p < SCIENTIFIC_BELOW:
        return f"{p:.1e}"
    x = 100 * p
    if x >= 1:
        return f"{x:.1f}%"
    return f"{x:#.2g}%"  # '#' keeps the trailing zero: 0.010%, not 0.01%; rounding up to 1.0 reads as above


def _cut(pieces: Sequence[str], limit: int | None) -> str:
    """``pieces`` joined, cut to at most ``limit`` characters with a final ``…``; never inside a piece."""
    text = "".join(pieces)
    if limit is None or len(text) <= limit:
        return text
    out, n = [], 0
    for piece in pieces:
        if n + len(piece) > limit - 1:
            break
        out.append(piece)
        n += len(piece)
    return "".join(out) + "…"


def _visible(c: str) -> str:
    if c in VISIBLE:
        return VISIBLE[c]
    return c if c.isprintable() else repr(c)[1:-1]


def token(tok: str, limit: int | None = TOKEN_LIMIT) -> str:
    """A token as it is shown: a space as ``␣``, a newline as ``↵``, any other character that prints as nothing
    (tab, no-break space, zero-width and control characters) as its escape (``\\t``, ``\\xa0``, ``\\u200b``),
    everything else as itself; cut to ``limit`` characters (None: whole) with a final ``…``, never inside an
    escape. So ``" 56"`` and ``"56"`` differ on the page and no token is a blank."""
    return _cut([_visible(c) for c in str(tok)], limit)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a final ``…`` (e.g. a prompt's ``repr`` in a table cell)."""
    return _cut(list(text), limit)


def depth(layer: int, num_layers: int) -> str:
    return f"L{layer} ({100 * layer / num_layers:.0f}% depth)"


def format_layers(layers: Sequence[int]) -> str:
    """Compact layer list: [0, 1, 2, 3, 7] -> '0-3,7'."""
    layers = sorted(set(int(v) for v in layers))
    parts: list[str] = []
    i = 0
    while i < len(layers):
        j = i
        while j + 1 < len(layers) and layers[j + 1] == layers[j] + 1:
            j += 1
        parts.append(str(layers[i]) if i == j else f"{layers[i]}-{layers[j]}")
        i = j + 1
    return ",".join(parts)
