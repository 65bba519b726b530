"""The dual-reward training step's result (step 3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lazarus_nb.data.prompts import (
    CLASSES,
)
from lazarus_nb.data.tokens import (
    ClassTokens,
)
from lazarus_nb.measure.evaluate import Evaluation
from lazarus_nb.results.lens import token_dicts

if TYPE_CHECKING:

    from lazarus_nb.train.state import TrainState


@dataclass
class DualRewardResult:
    """Everything the dual-reward step reports (the CLI's JSON and the notebooks' tables)."""

    model: str
    num_layers: int
    classifier_layer: int
    class_tokens: ClassTokens
    trainable_params: int
    state: TrainState
    baseline: Evaluation
    final: Evaluation
    checkpoint: str | None
    # per canonical prompt, the tokens as trained (prompt and answer with its terminator): users see what was
    # trained (tokens.trained_tokens)
    canonical_tokens: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ranks: int = 1  # processes that trained it data-parallel (this session; docs/scale.md)

    @property
    def steps_to_readable(self) -> int | None:
        """First snapshot step with full-vocab top-1 >= ``train.config.READABLE`` at the classifier layer, on the
        snapshot set (``train.History.steps_to_readable``)."""
        return self.state.history.steps_to_readable(self.classifier_layer)

    @property
    def steps_to_readable_train(self) -> int | None:
        """The same on the training-set snapshot set (memorisation: the ``problem`` control's measure)."""
        return self.state.history.steps_to_readable(self.classifier_layer, on="train")

    def to_dict(self) -> dict[str, Any]:
        hist = self.state.history
        return {
            "model": self.model,
            "num_layers": self.num_layers,
            "classifier_layer": self.classifier_layer,
            **token_dicts(self.class_tokens),
            "label_map": self.state.config.label_map,
            "class_targets": dict(zip(CLASSES, self.class_tokens.words)),  # class -> the word its lens reads
            "steps_to_readable": self.steps_to_readable,
            "steps_to_readable_train": self.steps_to_readable_train,
            "trainable_params": self.trainable_params,
            "config": asdict(self.state.config),
            "history": [{"step": s.step, "total": s.total, "cls_loss": s.cls_loss, "ans_loss": s.ans_loss}
                        for s in hist.steps],
            "snapshots": [asdict(s) for s in hist.snapshots],
            "baseline": self.baseline.summary(),
            "final": self.final.summary(),
            "baseline_lens": self.baseline.lens.to_dict(),
            "final_lens": self.final.lens.to_dict(),
            "checkpoint": self.checkpoint,
            "train_seconds": self.state.seconds,
            "status": self.state.status,
            "stop_reason": self.state.stop_reason,  # "steps", or "readable" (stop_when_readable stopped it early)
            "ranks": self.ranks,
            "canonical": self.canonical_tokens,
            **self.extra,
        }
