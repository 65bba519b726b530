"""Evaluation: logit-lens classifier metrics per layer, the 8-prompt table, and greedy answer accuracy.

Two accuracies are reported and always named: *full-vocab top-1* (the argmax over the whole vocabulary
is the class token: the word is literally emitted) and *class-restricted* (the argmax over the four
class tokens only: a 4-way readout, chance 25%).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from .data import CLASSES, Sample
from .lens import LensReadout, LogitLens, forward_hidden, readout
from .tokens import ClassTokens, encode_prompt, make_batch


def lens_readout(
    lens: LogitLens,
    tokenizer: Any,
    samples: Sequence[Sample],
    class_tokens: ClassTokens,
    layers: Sequence[int] | None = None,
    top_k: int = 5,
    chunk: int = 64,
) -> LensReadout:
    """The lens at the last prompt token of every sample (prompts only), in chunks to bound memory."""
    parts = []
    for i in range(0, len(samples), chunk):
        batch = make_batch(tokenizer, samples[i : i + chunk], class_tokens, with_answers=False)
        parts.append(readout(lens, batch.tokens, batch.prompt_last, class_tokens.ids, layers, top_k))
    if len(parts) == 1:
        return parts[0]
    cat = {k: mx.concatenate([getattr(p, k) for p in parts], axis=1)
           for k in ("probs", "ranks", "top_ids", "top_probs")}
    return LensReadout(parts[0].layers, parts[0].target_ids, **cat)


@dataclass
class LensStats:
    """Per-layer logit-lens classifier metrics over a sample set (lists align with ``layers``)."""

    layers: list[int]
    prob: list[float]  # mean probability of the correct class token (full-vocab softmax)
    restricted_acc: list[float]  # class-restricted accuracy (argmax over the class tokens)
    top1_acc: list[float]  # full-vocab top-1 accuracy (argmax over the vocabulary is the class token)
    median_rank: list[float]  # median rank of the correct class token in the vocabulary (0 = top)
    class_prob: dict[str, list[float]] = field(default_factory=dict)  # per class: mean P(own token)

    def at(self, layer: int) -> dict[str, float]:
        i = self.layers.index(layer)
        return {"prob": self.prob[i], "restricted_acc": self.restricted_acc[i], "top1_acc": self.top1_acc[i],
                "median_rank": self.median_rank[i]}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lens_stats(r: LensReadout, labels: Sequence[int]) -> LensStats:
    """Summarise a readout given each row's class index."""
    lab = mx.array(list(labels))
    rows = mx.arange(len(labels))
    correct_prob = np.array(r.probs[:, rows, lab])  # (L, B)
    correct_rank = np.array(r.ranks[:, rows, lab])
    restricted = np.array(r.restricted_pred() == lab[None, :])
    labels_np = np.array(labels)
    class_prob = {c: correct_prob[:, labels_np == k].mean(axis=1).tolist()
                  for k, c in enumerate(CLASSES) if (labels_np == k).any()}
    return LensStats(
        layers=list(r.layers),
        prob=correct_prob.mean(axis=1).tolist(),
        restricted_acc=restricted.mean(axis=1).tolist(),
        top1_acc=(correct_rank == 0).mean(axis=1).tolist(),
        median_rank=np.median(correct_rank, axis=1).tolist(),
        class_prob=class_prob,
    )


def sample_lens_stats(
    lens: LogitLens, tokenizer: Any, samples: Sequence[Sample], class_tokens: ClassTokens,
    layers: Sequence[int] | None = None,
) -> LensStats:
    """``lens_stats`` of ``samples`` (the data of snapshots and of the before/after lens plots)."""
    r = lens_readout(lens, tokenizer, samples, class_tokens, layers, top_k=1)
    return lens_stats(r, [s.label_index for s in samples])


@dataclass
class CanonicalRow:
    prompt: str
    predicted: str  # full-vocab top-1 token of the lens at the classifier layer
    expected: str  # class word
    ok: bool  # predicted token is the expected class token (full-vocab top-1)
    restricted: str  # class-restricted prediction (argmax over the class tokens)
    prob: float  # P(expected class token)


def canonical_rows(
    lens: LogitLens, tokenizer: Any, samples: Sequence[Sample], class_tokens: ClassTokens, layer: int
) -> list[CanonicalRow]:
    """The original tool's table: lens at ``layer`` on each prompt; Status is full-vocab top-1."""
    r = lens_readout(lens, tokenizer, samples, class_tokens, [layer], top_k=1)
    rows = []
    for b, s in enumerate(samples):
        k = s.label_index
        top = int(r.top_ids[0, b, 0].item())
        rows.append(CanonicalRow(
            prompt=s.prompt,
            predicted=tokenizer.decode([top]),
            expected=s.label,
            ok=top == class_tokens.ids[k],
            restricted=class_tokens.words[int(r.restricted_pred()[0, b].item())],
            prob=float(r.probs[0, b, k].item()),
        ))
    return rows


_LEADING_INT = re.compile(r"\s*(-?\d+)")


def greedy_answers(
    lens: LogitLens, tokenizer: Any, samples: Sequence[Sample], max_new_tokens: int | None = None
) -> list[str]:
    """Greedy continuation of each prompt (text of the new tokens). Prompts are grouped by token length,
    so no padding is involved; ``max_new_tokens`` defaults to the longest answer + 1 (so "560" for "56"
    is caught as wrong)."""
    encoded = [encode_prompt(tokenizer, s.prompt) for s in samples]
    if max_new_tokens is None:
        max_new_tokens = 1 + max(len(tokenizer.encode(s.answer, add_special_tokens=False)) for s in samples)
    out: list[str] = [""] * len(samples)
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        groups.setdefault(len(ids), []).append(i)
    for idx in groups.values():
        tokens = mx.array([encoded[i] for i in idx], dtype=mx.int32)
        new = []
        for _ in range(max_new_tokens):
            _, final = forward_hidden(lens.model, tokens)
            nxt = mx.argmax(lens.unembed(final[:, -1]), axis=-1).astype(mx.int32)
            new.append(nxt)
            tokens = mx.concatenate([tokens, nxt[:, None]], axis=1)
        gen = np.array(mx.stack(new, axis=1))
        for row, i in enumerate(idx):
            out[i] = tokenizer.decode(gen[row].tolist())
    return out


def answer_correct(generated: str, answer: str) -> bool:
    """Exact: the generated text starts with exactly the answer's integer (so "560" for "56" is wrong)."""
    m = _LEADING_INT.match(generated)
    return bool(m) and m.group(1) == answer


def answer_prefix_correct(generated: str, answer: str) -> bool:
    """Prefix: the generated text starts with the answer's digits, whatever follows ("560" for "56" counts).

    Why a second metric: the answer loss scores the answer tokens only and never a terminator, so training
    teaches a model to produce the answer but not to stop after it. Both are reported, always named."""
    return generated.lstrip().startswith(answer)


@dataclass
class AnswerAccuracy:
    accuracy: float  # exact: fraction whose greedy answer is exactly the integer (answer_correct)
    by_class: dict[str, float]  # exact accuracy per operation
    prefix_accuracy: float  # fraction whose greedy text starts with the answer (answer_prefix_correct)
    prefix_by_class: dict[str, float]
    examples: list[tuple[str, str, str]]  # (prompt, expected, generated) for the first few samples


def answer_accuracy(lens: LogitLens, tokenizer: Any, samples: Sequence[Sample]) -> AnswerAccuracy:
    """Greedy answers of ``samples`` scored exactly and by prefix, overall and per operation."""
    gen = greedy_answers(lens, tokenizer, samples)
    exact = np.array([answer_correct(g, s.answer) for g, s in zip(gen, samples)])
    prefix = np.array([answer_prefix_correct(g, s.answer) for g, s in zip(gen, samples)])
    labels = np.array([s.label for s in samples])

    def per_class(ok: np.ndarray) -> dict[str, float]:
        return {c: float(ok[labels == c].mean()) for c in CLASSES if (labels == c).any()}

    examples = [(s.prompt, s.answer, g) for s, g in list(zip(samples, gen))[:8]]
    return AnswerAccuracy(float(exact.mean()), per_class(exact), float(prefix.mean()), per_class(prefix), examples)


@dataclass
class Evaluation:
    """Everything the verify step reports, at one classifier layer."""

    layer: int
    canonical: list[CanonicalRow]
    canonical_correct: int  # k of 8, full-vocab top-1
    heldout_restricted_accuracy: float
    heldout_top1_accuracy: float
    heldout_prob: float  # mean P(correct class token) on the held-out set
    lens: LensStats  # held-out, every layer (for the before/after plots)
    answers: AnswerAccuracy | None

    @property
    def answer_accuracy(self) -> float | None:
        """Exact greedy answer accuracy on the held-out set; None when answers were not measured."""
        return self.answers.accuracy if self.answers else None

    @property
    def answer_prefix_accuracy(self) -> float | None:
        """Greedy answer accuracy, answer as prefix; None when answers were not measured."""
        return self.answers.prefix_accuracy if self.answers else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "answer_accuracy": self.answer_accuracy,
                "answer_prefix_accuracy": self.answer_prefix_accuracy}


def evaluate(
    lens: LogitLens,
    tokenizer: Any,
    class_tokens: ClassTokens,
    heldout: Sequence[Sample],
    canonical: Sequence[Sample],
    layer: int,
    answers: bool = True,
) -> Evaluation:
    """Canonical table + held-out lens metrics at ``layer`` (+ greedy answer accuracy)."""
    rows = canonical_rows(lens, tokenizer, canonical, class_tokens, layer)
    stats = sample_lens_stats(lens, tokenizer, heldout, class_tokens)
    at = stats.at(layer)
    return Evaluation(
        layer=layer,
        canonical=rows,
        canonical_correct=sum(r.ok for r in rows),
        heldout_restricted_accuracy=at["restricted_acc"],
        heldout_top1_accuracy=at["top1_acc"],
        heldout_prob=at["prob"],
        lens=stats,
        answers=answer_accuracy(lens, tokenizer, heldout) if answers else None,
    )
