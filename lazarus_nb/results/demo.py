"""The demo's result: the four steps and the files written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lazarus_nb.results.lens import BaselineLens
from lazarus_nb.results.probe import ProbeReport
from lazarus_nb.results.training import DualRewardResult
from lazarus_nb.results.verify import VerifyResult

if TYPE_CHECKING:

    pass


@dataclass
class DemoResult:
    """The four steps' results and the files the demo wrote (``to_dict()`` is ``demo --json``)."""

    output: Path
    probes: dict[str, ProbeReport]  # prompt family -> step 1
    baseline: BaselineLens  # step 2
    training: DualRewardResult  # step 3
    verified: VerifyResult  # step 4
    files: dict[str, str]  # file name -> path, in the order written
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        b = self.baseline
        return {
            "output": str(self.output), "model": self.training.model, "classifier_layer": b.classifier_layer,
            "files": self.files,
            "probe": {f: {"best_layer": r.result.best_layer, "best_accuracy": r.result.best_accuracy}
                      for f, r in self.probes.items()},
            "baseline_lens": {"layer": b.classifier_layer, "top_count": b.heldout.canonical_correct,
                              "n": len(b.heldout.canonical)},
            "verify": {k: {"canonical_correct": ev.canonical_correct,
                           "heldout_restricted_accuracy": ev.heldout_restricted_accuracy,
                           "heldout_top1_accuracy": ev.heldout_top1_accuracy, "answer_accuracy": ev.answer_accuracy}
                       for k, ev in (("base", self.verified.base), ("adapted", self.verified.adapted))},
            "matches_training": self.verified.matches_training,
        }
