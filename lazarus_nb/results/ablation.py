"""The subspace ablation's result (docs/science.md "Ablation"): per model (the base model, the adapted one), the
scores with nothing removed, with the class-readout subspace removed at the layer, with each random subspace of the
same dimension removed, and (adapted) with the adapter's LoRA switched off up to the layer; each cost set against
the random draws' costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lazarus_nb.data.prompts import CLASSES
from lazarus_nb.data.tokens import ClassTokens
from lazarus_nb.files import json_clean
from lazarus_nb.measure.ablation import COSTS, LEVEL, Comparison, Scores, compare, verdict
from lazarus_nb.measure.evaluate import wilson
from lazarus_nb.results.lens import token_dicts


@dataclass
class ModelAblation:
    """One model's scores: ``label`` is ``"base"`` (adapters off) or ``"adapted"``."""

    label: str
    unablated: Scores
    class_subspace: Scores
    random: list[Scores]
    lower_lora_off: Scores | None = None  # adapted only: LoRA off at the blocks up to the layer, on above it
    seconds: float = 0.0  # wall time of this model's conditions

    def cost(self, metric: str, scores: Scores) -> float:
        """What ``scores`` cost against this model unablated (``measure.ablation.COSTS``)."""
        return COSTS[metric](scores, self.unablated)

    def comparisons(self) -> dict[str, Comparison]:
        """Per metric of ``COSTS``: the class subspace's cost against the random draws' costs."""
        return {m: compare(self.cost(m, self.class_subspace), [self.cost(m, r) for r in self.random]) for m in COSTS}

    def verdicts(self) -> dict[str, str]:
        """Per metric: ``measure.ablation.verdict`` of its comparison."""
        return {m: verdict(c) for m, c in self.comparisons().items()}

    def to_dict(self) -> dict[str, Any]:
        def scored(s: Scores) -> dict[str, Any]:
            return {**s.to_dict(), "exact_ci": list(wilson(s.exact, s.n)),
                    "costs": {m: self.cost(m, s) for m in COSTS}}

        return {
            "label": self.label,
            "unablated": scored(self.unablated),
            "class_subspace": scored(self.class_subspace),
            "random": [scored(r) for r in self.random],
            "lower_lora_off": scored(self.lower_lora_off) if self.lower_lora_off is not None else None,
            "comparisons": {m: c.to_dict() for m, c in self.comparisons().items()},
            "verdicts": self.verdicts(),
            "seconds": self.seconds,
        }


@dataclass
class AblationResult:
    """Everything ``introspect ablate`` reports."""

    model: str
    adapter: str
    num_layers: int
    layer: int  # where the subspaces are removed
    classifier_layer: int  # the adapter's
    width: int  # the residual stream's dimension D
    subspace: str  # "full" (span of g * u_w) or "centred" (span of g * (u_w - mean u))
    dimension: int  # of the class subspace and of every random one
    mode: str  # "project" (component set to 0) or "mean" (set to the training mean's)
    draws: int
    seed: int  # of the random subspaces
    label_map: str
    class_tokens: ClassTokens
    problems: int  # held-out problems scored
    text_positions: int  # general-text positions the KL is averaged over
    base: ModelAblation
    adapted: ModelAblation
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (``files.json_clean``)."""
        return json_clean({
            "model": self.model,
            "adapter": self.adapter,
            "num_layers": self.num_layers,
            "layer": self.layer,
            "classifier_layer": self.classifier_layer,
            "width": self.width,
            "subspace": self.subspace,
            "dimension": self.dimension,
            "mode": self.mode,
            "positions": "every position of the block output",
            "draws": self.draws,
            "seed": self.seed,
            "label_map": self.label_map,
            **token_dicts(self.class_tokens),
            "class_targets": dict(zip(CLASSES, self.class_tokens.words)),
            "problems": self.problems,
            "text_positions": self.text_positions,
            "level": LEVEL,
            "costs": {"answer_nll": "rise in answer NLL per token", "exact": "drop in the exact-answer rate",
                      "kl": "KL(unablated || ablated) per general-text position, nats",
                      "lens_restricted": "drop in the lens's class-restricted accuracy at the layer"},
            "base": self.base.to_dict(),
            "adapted": self.adapted.to_dict(),
            "seconds": self.seconds,
        })
