"""The verify step's result (step 4), and what "the adapter reproduces training" compares (``TrainedMetrics``).
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from typing import Any

from lazarus_nb.measure.evaluate import Evaluation
from lazarus_nb.train.record import RunRecord

RECORD_KEYS = ("final_accuracy", "final_heldout_top1_accuracy", "final_heldout_restricted_accuracy")
"""The ``config.json`` keys (``RunRecord`` fields) that keep a trained run's ``TrainedMetrics``, in field order."""

SAME = 1e-6
"""Metrics this close are the same: the adapter from disk runs the same arithmetic on the same problems."""


@dataclass(frozen=True)
class TrainedMetrics:
    """What "the adapter reproduces training" compares, at the classifier layer: the canonical prompts' accuracy
    (full-vocab top-1), the held-out full-vocab top-1 and the held-out class-restricted accuracy."""

    canonical_accuracy: float
    heldout_top1_accuracy: float
    heldout_restricted_accuracy: float

    @classmethod
    def of(cls, ev: Evaluation) -> TrainedMetrics:
        return cls(ev.canonical_correct / len(ev.canonical), ev.heldout_top1_accuracy, ev.heldout_restricted_accuracy)

    @classmethod
    def saved(cls, record: RunRecord) -> TrainedMetrics | None:
        """The metrics a checkpoint saved after training; None when it has none (e.g. an interrupted run)."""
        values = [getattr(record, key) for key in RECORD_KEYS]
        return None if any(v is None for v in values) else cls(*values)

    def record_values(self) -> dict[str, float]:
        """The ``config.json`` keys and values that keep these metrics (``checkpoint.save``'s ``results``)."""
        return dict(zip(RECORD_KEYS, astuple(self)))

    def matches(self, other: TrainedMetrics) -> bool:
        return all(math.isclose(a, b, abs_tol=SAME) for a, b in zip(astuple(self), astuple(other)))


@dataclass
class VerifyResult:
    """Step 4: the lens re-run with the adapter loaded from disk, next to the base model."""

    checkpoint: str
    record: RunRecord
    base: Evaluation
    adapted: Evaluation
    # the adapter from disk gives the trained model's metrics (compared with the in-memory training result,
    # else with the results saved in the checkpoint); None when there is nothing to compare with
    matches_training: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "classifier_layer": self.adapted.layer,
                "base": self.base.to_dict(), "adapted": self.adapted.to_dict(),
                "matches_training": self.matches_training}
