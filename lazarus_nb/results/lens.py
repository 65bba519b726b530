"""Logit-lens results: a lens read on prompts (``LensReport``) and the baseline lens step (step 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lazarus_nb.data.tokens import (
    ClassTokens,
)
from lazarus_nb.measure.evaluate import Evaluation

if TYPE_CHECKING:

    pass


def token_dicts(tokens: ClassTokens) -> dict[str, dict[str, Any]]:
    return {"class_tokens": tokens.as_dict(), "class_token_strings": dict(zip(tokens.words, tokens.strings))}


@dataclass
class LensReport:
    """Logit lens per prompt and layer for a list of target words (CLI ``logit-lens``)."""

    layers: list[int]
    targets: dict[str, int]  # word -> token id
    prompts: list[dict[str, Any]]  # {"prompt", "layers": [{"layer", "targets": {w: {id, prob, rank}}, "top"}]}
    summary: dict[str, dict[str, int]]  # word -> {"top_count": prompts with it top-1 at the last layer shown, "n"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
