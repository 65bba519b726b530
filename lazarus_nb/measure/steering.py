"""Steering at one layer (docs/science.md "Steering"): add alpha * (mean h_l[op A] - mean h_l[op B]) to the op-B
prompts' states and see whether the answer, and the lens's class at the classifier layer, move to op A.

* :func:`class_means`: per operation, the mean block-l output at the last prompt token over the given (training)
  prompts.
* :func:`steer`: for op-B problems (a, b) whose operands also make a valid op-A problem, per alpha, the
  teacher-forced probability of op A's answer and of op B's answer after the op-B prompt (the whole answer, its
  terminator included), and the lens at L on the steered states at the last prompt token. The vector is added at the
  last prompt position (``"last"``: the classification position, where the means are taken and the lens reads the
  class) or at every prompt position (``"prompt"``). Block l's output of the unsteered model is computed once per
  batch; each alpha runs only the blocks above l (the edit ignores what the blocks below compute).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import mlx.core as mx
import numpy as np

from lazarus_nb.data.prompts import CLASSES, OperandRanges, Sample, all_triples, make_sample
from lazarus_nb.data.tokens import Batch, ClassTokens, make_batch
from lazarus_nb.measure.evaluate import last_token_hidden, teacher_forced_answers
from lazarus_nb.model.hooks import edited, forward_hidden, hidden_states
from lazarus_nb.model.lens import LogitLens, read_states
from lazarus_nb.model.load import LoadedModel

POSITIONS: tuple[str, ...] = ("last", "prompt")
"""Where the vector is added: the last prompt token only, or every prompt token."""


def class_means(loaded: LoadedModel, samples: Sequence[Sample], layer: int,
                classes: Sequence[str] = CLASSES) -> dict[str, np.ndarray]:
    """{operation: (D,) float64 mean of block ``layer``'s output at the last prompt token over ``samples`` of that
    operation}, for each of ``classes`` (each must have samples)."""
    chosen = [s for s in samples if s.label in classes]
    missing = [c for c in classes if not any(s.label == c for s in chosen)]
    if missing:
        raise ValueError(f"no prompts of {missing[0]!r} to average")
    hidden = last_token_hidden(loaded, [s.prompt for s in chosen], layers=[layer])[0].astype(np.float64)
    labels = np.array([s.label for s in chosen])
    return {c: hidden[labels == c].mean(axis=0) for c in classes}


def valid_pairs(samples: Sequence[Sample], to: str, ranges: OperandRanges | None = None) -> list[tuple[Sample, Sample]]:
    """(the op-B sample, the op-``to`` problem with the same operands) for every sample whose (a, b) is also a valid
    ``to`` problem under ``ranges`` (data.prompts.all_triples: e.g. a > b for subtract, b | a for divide)."""
    allowed = set(all_triples(to, ranges or OperandRanges()))
    return [(s, make_sample(s.a, to, s.b)) for s in samples if (s.a, s.b) in allowed]


@dataclass(frozen=True)
class SteeredPoint:
    """One alpha: per prompt, P(op A's answer) and P(op B's answer); the lens at L on the steered states."""

    alpha: float
    p_to: list[float]  # P(op A's whole answer, terminator included | op-B prompt), per prompt
    p_from: list[float]  # P(op B's own answer | op-B prompt), per prompt
    lens_to: int  # prompts whose lens class at L (the class-restricted argmax) is op A's class word
    lens_top1_to: int  # prompts whose full-vocabulary top-1 at L is op A's class word

    @property
    def n(self) -> int:
        return len(self.p_to)


def _mask(batch: Batch, positions: str) -> mx.array:
    """(B, T, 1) float: 1 where the vector is added (the last prompt token, or every prompt token)."""
    t = mx.arange(batch.tokens.shape[1])[None, :]
    last = batch.prompt_last[:, None]
    where = t == last if positions == "last" else t <= last
    return where.astype(mx.float32)[..., None]


def steer(lens: LogitLens, tokenizer: Any, pairs: Sequence[tuple[Sample, Sample]], vector: np.ndarray, layer: int,
          lens_layer: int, alphas: Sequence[float], class_tokens: ClassTokens, to_index: int,
          terminator: str = "eos", positions: str = "last") -> list[SteeredPoint]:
    """For each alpha, the op-B prompts of ``pairs`` ((op-B sample, op-A problem), ``valid_pairs``) with
    ``alpha * vector`` added to block ``layer``'s output at ``positions``: P(op A's answer), P(op B's answer)
    (teacher-forced) and the lens at ``lens_layer``, whose class word ``to_index`` (in ``class_tokens``) is op A's."""
    if positions not in POSITIONS:
        raise ValueError(f"unknown positions {positions!r}; use one of {', '.join(POSITIONS)}")
    prompts = [b for b, _ in pairs]
    crossed = [replace(b, answer=a.answer) for b, a in pairs]  # op B's prompt, op A's answer
    batches = [make_batch(tokenizer, prompts, class_tokens, terminator=terminator),
               make_batch(tokenizer, crossed, class_tokens, terminator=terminator)]
    states = [hidden_states(lens.model, b.tokens, layer)[layer] for b in batches]
    masks = [_mask(b, positions) for b in batches]
    v = mx.array(np.asarray(vector, dtype=np.float32))
    rows = mx.arange(len(pairs))
    out = []
    for alpha in alphas:
        probs, read = [], None
        for batch, state, mask in zip(batches, states, masks):
            steered = state + float(alpha) * v * mask
            with edited(lens.model, {layer: lambda _, steered=steered: steered}):
                hidden, final = forward_hidden(lens.model, batch.tokens)
            nll, _ = teacher_forced_answers(lens, batch, final)
            probs.append(np.exp(-nll).tolist())
            if read is None:  # the prompt is the same in both batches, so is the lens at its last token
                read = read_states(lens, hidden[lens_layer][rows, batch.prompt_last][None], None,
                                   list(class_tokens.ids), top_k=0)
        pred = np.array(read.restricted_pred())[0]
        top1 = np.array(read.ranks)[0, :, to_index] == 0
        out.append(SteeredPoint(float(alpha), probs[1], probs[0], int((pred == to_index).sum()), int(top1.sum())))
    return out
