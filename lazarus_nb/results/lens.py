"""Logit-lens results: a lens read on prompts (``LensReport``) and the baseline lens step (step 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lazarus_nb.data.tokens import ClassTokens
from lazarus_nb.measure.evaluate import Evaluation


def token_dicts(tokens: ClassTokens) -> dict[str, dict[str, Any]]:
    return {"class_tokens": tokens.as_dict(), "class_token_strings": dict(zip(tokens.words, tokens.strings))}


@dataclass
class TargetRead:
    """One target token under the lens at one layer."""

    id: int  # token id
    prob: float  # its probability over the full vocabulary
    rank: int  # its rank in the vocabulary, 0 = the top token

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "prob": self.prob, "rank": self.rank}


@dataclass
class LayerRead:
    """The lens at one layer of one prompt: each target's reading and the top tokens."""

    layer: int
    targets: dict[str, TargetRead]  # target word -> its reading
    top: list[tuple[str, float]]  # the top tokens (decoded) with their probabilities, most probable first

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "targets": {w: t.to_dict() for w, t in self.targets.items()},
                "top": [[tok, p] for tok, p in self.top]}


@dataclass
class PromptRead:
    """The lens at the last token of one prompt, at every layer read."""

    prompt: str
    layers: list[LayerRead]

    def at(self, layer: int) -> LayerRead:
        """The reading at ``layer`` (one of the layers read)."""
        for read in self.layers:
            if read.layer == layer:
                return read
        raise ValueError(f"layer {layer} was not read; the report has layers {[r.layer for r in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "layers": [r.to_dict() for r in self.layers]}


@dataclass
class LensReport:
    """Logit lens per prompt and layer for a list of target words (CLI ``logit-lens``)."""

    layers: list[int]
    targets: dict[str, int]  # word -> token id
    prompts: list[PromptRead]
    summary: dict[str, dict[str, int]]  # word -> {"top_count": prompts with it top-1 at the last layer shown, "n"}

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "targets": dict(self.targets),
                "prompts": [p.to_dict() for p in self.prompts],
                "summary": {w: dict(s) for w, s in self.summary.items()}}


@dataclass
class BaselineLens:
    """Step 2: the base model's logit lens, on the held-out problems (every layer, and the canonical table at
    the classifier layer) and on the 8 canonical prompts (every layer, with the top tokens)."""

    model: str
    num_layers: int
    class_tokens: ClassTokens
    heldout: Evaluation  # the held-out set training evaluates on; greedy answers are not measured here
    canonical: LensReport  # the 8 canonical prompts, class words as targets

    @property
    def classifier_layer(self) -> int:
        return self.heldout.layer

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "num_layers": self.num_layers, "classifier_layer": self.classifier_layer,
                **token_dicts(self.class_tokens), "heldout": self.heldout.to_dict(),
                "canonical_lens": self.canonical.to_dict()}
