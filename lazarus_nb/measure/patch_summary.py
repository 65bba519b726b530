"""What activation patching reports (docs/science.md "Activation patching"): per layer and prompt slot, the mean over
pairs with its 95% interval.

Pairs have different token layouts (``12 * 45 = `` has 8 tokens, ``7 * 8 = `` 6), so positions are aligned by the
part of the prompt they belong to (``data.pairs.segments``): a *slot* is (part, index in the part), e.g. ("b", 2) the
second token of the second operand, ("end", 1) the final space, the classification position. A slot's cells average
the pairs that have it; ``n`` says how many.

* The effects (whole answer, first answer token): mean and Student t 95% interval over pairs
  (``selectivity.t_interval``: the t interval of a mean; None below two pairs). The first-token effect leaves out
  the pairs whose answers share their first token.
* The lens class at the classifier layer after the patch: the fraction of pairs whose class-restricted read is the
  source problem's class (its lens target under the run's label map), and the fraction where that class token is
  also the full-vocabulary top-1, each with its Wilson interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus_nb.data.pairs import SEGMENTS
from lazarus_nb.data.tokens import PairIds
from lazarus_nb.measure.evaluate import wilson
from lazarus_nb.measure.patching import PairPatching
from lazarus_nb.measure.selectivity import t_interval

Slot = tuple[str, int]

_ORDER = ("start", *SEGMENTS)


def slots_of(pairs: Sequence[PairIds]) -> list[Slot]:
    """Every slot some pair has, in prompt order."""
    return sorted({s for p in pairs for s in p.slots}, key=lambda s: (_ORDER.index(s[0]), s[1]))


@dataclass
class SlotStats:
    """One metric over pairs at every layer x slot: the mean, its 95% interval (NaN where there is none) and the
    pairs in each cell."""

    mean: np.ndarray  # (layers, slots)
    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray  # (layers, slots) int
    interval: str  # how lo and hi were computed

    def to_dict(self) -> dict[str, Any]:
        def rows(a: np.ndarray) -> list:
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]

        return {"mean": rows(self.mean), "ci95": [[[lo, hi] for lo, hi in zip(*r)] for r in
                                                 zip(rows(self.lo), rows(self.hi))],
                "n": self.n.tolist(), "interval": self.interval}


def _by_slot(pairs: Sequence[PairIds], values: Sequence[np.ndarray | None], slots: Sequence[Slot]) -> np.ndarray:
    """(pairs, layers, slots) with NaN where a pair lacks the slot (or gave no value)."""
    layers = next(v.shape[0] for v in values if v is not None)
    out = np.full((len(pairs), layers, len(slots)), np.nan)
    column = {s: j for j, s in enumerate(slots)}
    for i, (pair, v) in enumerate(zip(pairs, values)):
        if v is not None:
            for p, s in enumerate(pair.slots):
                out[i, :, column[s]] = v[:, p]
    return out


def _t_stats(values: np.ndarray) -> SlotStats:
    """Mean and t interval over the first axis, ignoring NaN."""
    finite = np.isfinite(values)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(n > 0, np.nansum(values, axis=0) / np.maximum(n, 1), np.nan)
    lo, hi = np.full(mean.shape, np.nan), np.full(mean.shape, np.nan)
    for idx in zip(*np.nonzero(n >= 2)):
        lo[idx], hi[idx] = t_interval(values[(slice(None), *idx)][finite[(slice(None), *idx)]])
    return SlotStats(mean, lo, hi, n, "Student t 95% interval of the mean over pairs")


def _fraction_stats(hits: np.ndarray) -> SlotStats:
    """Fraction of pairs (first axis; NaN: no value) that are true, with Wilson intervals."""
    finite = np.isfinite(hits)
    n = finite.sum(axis=0)
    k = np.where(finite, hits, 0).sum(axis=0).astype(int)
    mean = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    lo, hi = np.full(mean.shape, np.nan), np.full(mean.shape, np.nan)
    for idx in zip(*np.nonzero(n > 0)):
        lo[idx], hi[idx] = wilson(int(k[idx]), int(n[idx]))
    return SlotStats(mean, lo, hi, n, "Wilson 95% interval of the fraction of pairs")


@dataclass
class PatchSummary:
    """One model's patching, aggregated over pairs per layer x slot."""

    slots: list[Slot]
    effect: SlotStats
    first_token: SlotStats
    follows_source: SlotStats | None  # (classifier layer + 1, slots); None without a classifier layer
    follows_source_top1: SlotStats | None

    def to_dict(self) -> dict[str, Any]:
        return {"slots": [list(s) for s in self.slots], "effect": self.effect.to_dict(),
                "first_token": self.first_token.to_dict(),
                "follows_source": None if self.follows_source is None else self.follows_source.to_dict(),
                "follows_source_top1": None if self.follows_source_top1 is None
                else self.follows_source_top1.to_dict()}


def summarise(pairs: Sequence[PairIds], patched: Sequence[PairPatching], slots: Sequence[Slot],
              source_classes: Sequence[int] | None = None) -> PatchSummary:
    """Aggregate per-pair results over ``slots`` (``slots_of``). ``source_classes``: each pair's source problem's
    class index (the lens target its class tokens are read against), for the class-follows-source fractions."""
    effect = _t_stats(_by_slot(pairs, [r.effect for r in patched], slots))
    first = _t_stats(_by_slot(pairs, [r.first_token for r in patched], slots))
    if source_classes is None or patched[0].reads is None:
        return PatchSummary(list(slots), effect, first, None, None)
    follows = [(r.reads.cls == c).astype(float) for r, c in zip(patched, source_classes)]
    top1 = [((r.reads.cls == c) & r.reads.top1).astype(float) for r, c in zip(patched, source_classes)]
    return PatchSummary(list(slots), effect, first, _fraction_stats(_by_slot(pairs, follows, slots)),
                        _fraction_stats(_by_slot(pairs, top1, slots)))
