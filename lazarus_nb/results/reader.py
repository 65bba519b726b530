"""The reader-only baseline's result (docs/science.md "Reader-only baseline"): per layer, how readable the class is
through a trained low-rank affine reader on the frozen model, beside the plain logit lens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lazarus_nb.data.labels import DESCRIPTIONS
from lazarus_nb.data.prompts import CLASSES
from lazarus_nb.data.tokens import ClassTokens
from lazarus_nb.files import json_clean
from lazarus_nb.measure.evaluate import LensStats
from lazarus_nb.results.lens import token_dicts
from lazarus_nb.train.config import READABLE, READER_FIELDS, TrainConfig


@dataclass
class ReaderSnapshot:
    """The lens through the reader after ``step`` steps (0: the plain logit lens), on the run's snapshot sets: the
    fixed class-balanced held-out subset a dual-reward run's snapshots score, and its training-set twin."""

    step: int
    heldout: LensStats
    train: LensStats

    def to_dict(self) -> dict[str, Any]:
        def brief(s: LensStats) -> dict[str, Any]:
            return {"n": s.n, "top1_acc": s.top1_acc, "restricted_acc": s.restricted_acc, "prob": s.prob}

        return {"step": self.step, "heldout": brief(self.heldout), "train": brief(self.train)}


@dataclass
class ReaderResult:
    """Everything the reader baseline reports; lists of per-layer values align with ``layers``."""

    model: str
    num_layers: int
    layers: list[int]
    classifier_layer: int  # the run's classifier layer (the one a dual-reward run with these settings trains)
    config: TrainConfig
    class_tokens: ClassTokens
    params_per_layer: int  # trainable parameters of one layer's reader
    plain: LensStats  # step 0, B = 0: the plain logit lens, on the held-out set
    heldout: LensStats  # the trained reader on the held-out set
    train: LensStats  # ... and on the distinct training problems
    snapshots: list[ReaderSnapshot]
    losses: list[float]  # per step: the mean over layers of each layer's mean classification loss
    seconds: float  # wall time of the whole baseline
    hidden_seconds: float  # of which: the hidden states of every problem, computed once

    @property
    def label_map(self) -> str:
        return self.config.label_map

    def steps_to_readable(self, on: str = "heldout") -> list[int | None]:
        """Per layer, the first snapshot step whose full-vocab top-1 reaches ``train.config.READABLE`` on the
        held-out snapshot set (``on="train"``: on its training-set twin); None where none does. The rule and the
        problems are a dual-reward run's (``train.History.steps_to_readable``), so the two compare directly."""
        return [next((s.step for s in self.snapshots if getattr(s, on).top1_acc[i] >= READABLE), None)
                for i in range(len(self.layers))]

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (``files.json_clean``: a non-finite number is null and listed under ``non_finite``)."""
        return json_clean({
            "model": self.model,
            "num_layers": self.num_layers,
            "layers": list(self.layers),
            "classifier_layer": self.classifier_layer,
            "label_map": self.label_map,
            "label_map_description": DESCRIPTIONS[self.label_map],
            **token_dicts(self.class_tokens),
            "class_targets": dict(zip(CLASSES, self.class_tokens.words)),
            "config": {name: getattr(self.config, name) for name in READER_FIELDS},
            "reader": "h -> h + B A h + b before the final norm and unembedding; B = 0, b = 0 at step 0",
            "params_per_layer": self.params_per_layer,
            "trainable_params": self.params_per_layer * len(self.layers),
            "readable": READABLE,
            "steps_to_readable": self.steps_to_readable(),
            "steps_to_readable_train": self.steps_to_readable("train"),
            "plain_lens": self.plain.to_dict(),
            "heldout": self.heldout.to_dict(),
            "train": self.train.to_dict(),
            "snapshots": [s.to_dict() for s in self.snapshots],
            "losses": list(self.losses),
            "seconds": self.seconds,
            "hidden_seconds": self.hidden_seconds,
        })
