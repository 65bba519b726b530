"""The control tasks of a sweep, side by side with the truth: each label map's lens accuracy at the classifier
layer over the training steps (held-out and training snapshot sets, per seed), and the selectivity of the truth
against each control with its intervals (docs/science.md "Control tasks").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lazarus_nb.measure.selectivity import Selectivity

SETS: tuple[str, ...] = ("heldout", "train")
"""The snapshot sets: held-out problems (generalisation: the ``operand`` control's measure) and training problems
(memorisation: the ``problem`` control's)."""


@dataclass
class Curve:
    """One label map's full-vocab top-1 at the classifier layer, per seed, at each snapshot step of one set."""

    steps: list[int]
    by_seed: dict[int, list[float]]  # seed -> accuracy per step


@dataclass
class ControlComparison:
    """The truth and the controls under one setting of the other axes (say, one cls_weight)."""

    settings: dict[str, Any]  # the other swept axes' values ({} when only label_map and seed vary)
    classifier_layer: int
    n: int  # problems per snapshot set
    heldout_n: int  # problems in the final held-out evaluation
    curves: dict[str, dict[str, Curve]]  # label map -> set -> curve
    # control -> set -> selectivity at each step the runs share
    selectivity: dict[str, dict[str, list[Selectivity]]] = field(default_factory=dict)
    final: dict[str, Selectivity] = field(default_factory=dict)  # control -> on the whole held-out set, last step

    def to_dict(self) -> dict[str, Any]:
        def sel(s: Selectivity) -> dict[str, Any]:
            return {"step": s.step, "seeds": s.seeds, "n": s.n, "true": s.true_accuracy, "control": s.control_accuracy,
                    "selectivity": s.value, "within_ci": list(s.within),
                    "across_seeds_ci": list(s.across) if s.across is not None else None}

        return {
            "settings": self.settings, "classifier_layer": self.classifier_layer, "n": self.n,
            "heldout_n": self.heldout_n,
            "curves": {m: {k: {"steps": c.steps, "by_seed": {str(s): v for s, v in c.by_seed.items()}}
                           for k, c in sets.items()} for m, sets in self.curves.items()},
            "selectivity": {m: {k: [sel(s) for s in v] for k, v in sets.items()}
                            for m, sets in self.selectivity.items()},
            "final": {m: sel(s) for m, s in self.final.items()},
        }
