"""How numbers and tokens are written: one place for percentages, probabilities, layers and tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def pct(p: float | None, digits: int = 1) -> str:
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "n/a"
    return f"{100 * p:.{digits}f}%"


def prob_str(p: float) -> str:
    """Probabilities span 1e-9..1: three significant digits, as a percentage."""
    return f"{100 * p:.3g}%"


def short_token(tok: str, limit: int = 14) -> str:
    r = repr(tok)
    return r if len(r) <= limit else r[: limit - 1] + "…"


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
