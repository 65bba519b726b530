"""The verify step's result (step 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lazarus_nb.measure.evaluate import Evaluation
from lazarus_nb.train.record import RunRecord

if TYPE_CHECKING:

    pass


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
