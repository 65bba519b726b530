"""Activation patching's results (docs/science.md "Activation patching"): per model (the base model, and the adapted
one when there is an adapter), every pair's effect at every layer x prompt position and their summary per layer x
slot; and one pair patched at one (layer, position) beside its clean runs (the notebook's widget).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus_nb.data.pairs import Pair
from lazarus_nb.data.tokens import ClassTokens, PairIds
from lazarus_nb.files import json_clean
from lazarus_nb.measure.patch_summary import PatchSummary, Slot
from lazarus_nb.measure.patching import PairPatching, RunView
from lazarus_nb.results.lens import token_dicts
from lazarus_nb.train.config import TrainConfig

DEFINITION = ("effect = (LD_patched - LD_target) / (LD_source - LD_target), LD = log P(source answer) - "
              "log P(target answer), teacher-forced after the target prompt, terminator included: 0 = the clean target "
              "run, 1 = the clean source run")


def _rows(a: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(a, dtype=float)]


@dataclass
class ModelPatching:
    """One model's patching: every pair's arrays and their summary."""

    label: str  # "base model" or "adapted model"
    pairs: list[PairPatching]
    summary: PatchSummary

    @property
    def excluded_first_token(self) -> int:
        """Pairs left out of the first-token effect: their two answers start with the same token."""
        return sum(p.shares_first_token for p in self.pairs)

    def pair_dict(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        out = {"effect": _rows(p.effect), "first_token": None if p.shares_first_token else _rows(p.first_token),
               "ld": _rows(p.ld), "first_ld": _rows(p.first_ld), "ld_target": p.ld_target, "ld_source": p.ld_source,
               "first_ld_target": p.first_ld_target, "first_ld_source": p.first_ld_source,
               "computed": p.computed.tolist()}
        if p.reads is not None and p.clean_reads is not None:
            out.update(class_read=p.reads.cls.tolist(), class_read_top1=p.reads.top1.tolist(),
                       clean_class_read={"target": int(p.clean_reads.cls[0]), "source": int(p.clean_reads.cls[1])},
                       clean_class_read_top1={"target": bool(p.clean_reads.top1[0]),
                                              "source": bool(p.clean_reads.top1[1])})
        return out


@dataclass
class PatchingResult:
    """Activation patching of ``pairs`` on one loaded model; ``models`` holds the base model's run and, with an
    adapter, the adapted model's (the base with its adapters switched off)."""

    model: str
    num_layers: int
    config: TrainConfig  # the run whose held-out problems the pairs come from (the adapter's, else the default run)
    seed: int  # the pairs' draw seed (not used for given pairs)
    drawn: bool  # the pairs were drawn from the held-out set (False: given by the user)
    pairs: list[Pair]
    ids: list[PairIds]
    tokens: list[list[str]]  # each pair's target prompt tokens, as text
    classifier_layer: int | None  # with an adapter: its classifier layer, where the lens class is read
    class_tokens: ClassTokens | None
    source_classes: list[int] | None  # per pair: the class index the lens should read for the source problem
    target_classes: list[int] | None
    adapter: str | None
    models: list[ModelPatching]
    every_position: bool
    seconds: float

    @property
    def slots(self) -> list[Slot]:
        return self.models[0].summary.slots

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (``files.json_clean``)."""
        pairs = []
        for i, (pair, ids) in enumerate(zip(self.pairs, self.ids)):
            entry = {"source": pair.source.prompt, "target": pair.target.prompt,
                     "source_answer": pair.source.answer, "target_answer": pair.target.answer,
                     "source_operation": pair.source.label, "target_operation": pair.target.label,
                     "tokens": self.tokens[i], "operator_position": ids.first,
                     "slots": [list(s) for s in ids.slots],
                     "models": {m.label: m.pair_dict(i) for m in self.models}}
            if self.source_classes is not None and self.target_classes is not None:
                entry.update(source_class=self.source_classes[i], target_class=self.target_classes[i])
            pairs.append(entry)
        return json_clean({
            "model": self.model,
            "num_layers": self.num_layers,
            "adapter": self.adapter,
            "classifier_layer": self.classifier_layer,
            **(token_dicts(self.class_tokens) if self.class_tokens is not None else {}),
            # a class read (class_read, source_class, ...) indexes these words
            "class_words": list(self.class_tokens.words) if self.class_tokens is not None else None,
            "label_map": self.config.label_map,
            "pairs_from": (f"held-out problems of the run (seed {self.config.seed}), drawn with seed {self.seed}"
                           if self.drawn else "given"),
            "definition": DEFINITION,
            "first_token": "the same normalised effect on the first answer token only; pairs whose answers share "
                           "their first token are left out",
            "every_position": self.every_position,
            "slots": [list(s) for s in self.slots],
            "summary": {m.label: {**m.summary.to_dict(), "excluded_first_token": m.excluded_first_token}
                        for m in self.models},
            "pairs": pairs,
            "seconds": self.seconds,
        })


@dataclass
class PairPatch:
    """One pair patched at one (layer, position), beside its clean target and source runs (the widget's view)."""

    model: str
    label: str  # "base model" or "adapted model"
    pair: Pair
    tokens: list[str]  # the target prompt's tokens, as text
    layer: int
    position: int
    operator_position: int
    classifier_layer: int
    class_words: list[str]  # the class tokens' words, in the order a read indexes
    patched: RunView
    target: RunView
    source: RunView

    def to_dict(self) -> dict[str, Any]:
        return json_clean({"model": self.model, "label": self.label, "source": self.pair.source.prompt,
                           "target": self.pair.target.prompt, "tokens": self.tokens, "layer": self.layer,
                           "position": self.position, "operator_position": self.operator_position,
                           "classifier_layer": self.classifier_layer, "class_words": self.class_words,
                           "patched": self.patched.to_dict(), "clean_target": self.target.to_dict(),
                           "clean_source": self.source.to_dict()})
