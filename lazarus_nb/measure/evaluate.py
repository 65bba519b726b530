"""Evaluation: logit-lens classifier metrics per layer, the 8-prompt table, and greedy answer accuracy.

Two lens accuracies are reported and always named: *full-vocab top-1* (the argmax over the whole vocabulary
is the class token: the word is literally emitted) and *class-restricted* (the argmax over the four
class tokens only: a 4-way readout, chance 25%).

The answer metric is *exact*: greedy decoding stops at an end-of-sequence token or a newline, and the text
up to there, stripped, must be the integer (docs/science.md "Answer accuracy"). Training ends every answer with
the terminator, so a model that writes ``800000`` for ``40 * 20 = `` is wrong, not "right as a prefix".
Every accuracy has a Wilson 95% interval (:func:`wilson`) from its counts; the teacher-forced answer NLL
(:func:`answer_nll`) moves before greedy answers become right.

Controls reported with every evaluation (docs/science.md "Cross-format transfer" and "Collateral damage"):
the lens at the classifier layer on the
held-out problems written as *word* prompts (cross-format transfer, :func:`layer_accuracy` on
``data.word_forms``), and collateral damage on general text (:mod:`lazarus_nb.measure.collateral`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from lazarus_nb.data.prompts import CLASSES, Sample
from lazarus_nb.data.tokens import (
    Batch,
    ClassTokens,
    encode_example,
    encode_prompt,
    encode_prompts,
    make_batch,
    pad_prompts,
    stop_ids,
)
from lazarus_nb.measure.collateral import GeneralText, general_text_metrics
from lazarus_nb.measure.xent import cross_entropy
from lazarus_nb.model.hooks import forward_hidden, hidden_states
from lazarus_nb.model.lens import LensReadout, LogitLens, readout
from lazarus_nb.model.load import LoadedModel


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


def last_token_hidden(loaded: LoadedModel, prompts: Sequence[str], chunk: int = 64,
                      layers: Sequence[int] | None = None) -> np.ndarray:
    """(len(layers), N, D) float32 hidden states at each prompt's last token (the classification position) of the
    blocks ``layers`` (default: every block): what the probe and the reader baseline train on. Every prompt is encoded
    and length-checked before the first chunk runs; the forward stops at the deepest block asked for."""
    encoded = encode_prompts(loaded.tokenizer, prompts, loaded.context_length)
    layers = list(range(loaded.num_layers)) if layers is None else list(layers)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a chunk: less padding
    out = []
    for i in range(0, len(order), chunk):
        tokens, last = pad_prompts(loaded.tokenizer, [encoded[j] for j in order[i : i + chunk]])
        hidden = hidden_states(loaded.model, tokens, max(layers))
        rows = mx.arange(tokens.shape[0])
        out.append(np.stack([np.array(hidden[layer][rows, last].astype(mx.float32)) for layer in layers]))
    return np.concatenate(out, axis=1)[:, np.argsort(order)]


@dataclass
class LensStats:
    """Per-layer logit-lens classifier metrics over a sample set (lists align with ``layers``)."""

    layers: list[int]
    prob: list[float]  # mean probability of the correct class token (full-vocab softmax)
    restricted_acc: list[float]  # class-restricted accuracy (argmax over the class tokens)
    top1_acc: list[float]  # full-vocab top-1 accuracy (argmax over the vocabulary is the class token)
    median_rank: list[float]  # median rank of the correct class token in the vocabulary (0 = top)
    class_prob: dict[str, list[float]] = field(default_factory=dict)  # per class: mean P(own token)
    n: int = 0  # samples the accuracies are fractions of

    def at(self, layer: int) -> dict[str, float]:
        i = self.layers.index(layer)
        return {"prob": self.prob[i], "restricted_acc": self.restricted_acc[i], "top1_acc": self.top1_acc[i],
                "median_rank": self.median_rank[i]}

    def to_dict(self) -> dict[str, Any]:
        """The per-layer lists, and the Wilson 95% interval of each layer's accuracies (``*_acc_ci``)."""
        return {**asdict(self), "restricted_acc_ci": [interval_of(p, self.n) for p in self.restricted_acc],
                "top1_acc_ci": [interval_of(p, self.n) for p in self.top1_acc]}


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
        n=len(labels),
    )


def sample_lens_stats(
    lens: LogitLens, tokenizer: Any, samples: Sequence[Sample], class_tokens: ClassTokens,
    layers: Sequence[int] | None = None,
) -> LensStats:
    """``lens_stats`` of ``samples`` (the data of snapshots and of the before/after lens plots)."""
    return sets_lens_stats(lens, tokenizer, [samples], class_tokens, layers)[0]


def sets_lens_stats(
    lens: LogitLens, tokenizer: Any, sets: Sequence[Sequence[Sample]], class_tokens: ClassTokens,
    layers: Sequence[int] | None = None,
) -> list[LensStats]:
    """``lens_stats`` of each sample set, read in one pass (a snapshot's held-out and training sets share their
    forward passes and unembedding matmuls: one batch of 64 rows costs less than two of 32)."""
    samples = [s for group in sets for s in group]
    r = lens_readout(lens, tokenizer, samples, class_tokens, layers, top_k=0)  # lens_stats reads no top-k tokens
    out, start = [], 0
    for group in sets:
        part = slice(start, start + len(group))
        sub = LensReadout(r.layers, r.target_ids, r.probs[:, part], r.ranks[:, part], r.top_ids[:, part],
                          r.top_probs[:, part])
        out.append(lens_stats(sub, [s.target_index for s in group]))
        start += len(group)
    return out


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
    """The original tool's table: lens at ``layer`` on each prompt; Status is full-vocab top-1. Expected is the
    word the class is read as (``class_tokens.words``: the class word itself, or another under a permuted map)."""
    r = lens_readout(lens, tokenizer, samples, class_tokens, [layer], top_k=1)
    rows = []
    for b, s in enumerate(samples):
        k = s.target_index
        top = int(r.top_ids[0, b, 0].item())
        rows.append(CanonicalRow(
            prompt=s.prompt,
            predicted=tokenizer.decode([top]),
            expected=class_tokens.words[k],
            ok=top == class_tokens.ids[k],
            restricted=class_tokens.words[int(r.restricted_pred()[0, b].item())],
            prob=float(r.probs[0, b, k].item()),
        ))
    return rows


def greedy_answers(
    lens: LogitLens, tokenizer: Any, samples: Sequence[Sample], max_new_tokens: int | None = None
) -> list[str]:
    """Greedy continuation of each prompt, up to (not including) its stop: an end-of-sequence token
    (``tokens.stop_ids``) or a newline. Prompts are grouped by token length, so no padding is involved; each
    group's prompt is forwarded once into mlx-lm's KV cache, then one token per step (as ``mlx_lm.generate``
    does; re-forwarding the whole prefix for every token took 2.5x as long). A group stops early once every row has
    stopped. ``max_new_tokens`` defaults to the longest answer + 1 token, enough to see the terminator (or the
    extra digit of "560" for "56")."""
    from mlx_lm.models.cache import make_prompt_cache  # imports mlx-lm: only when generating

    encoded = [encode_prompt(tokenizer, s.prompt) for s in samples]
    if max_new_tokens is None:
        max_new_tokens = 1 + max(len(encode_example(tokenizer, s.prompt, s.answer, "none")[1]) for s in samples)
    stops = stop_ids(tokenizer)
    out: list[str] = [""] * len(samples)
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        groups.setdefault(len(ids), []).append(i)
    for idx in groups.values():
        tokens = mx.array([encoded[i] for i in idx], dtype=mx.int32)
        cache = make_prompt_cache(lens.model)
        rows: list[list[int]] = [[] for _ in idx]
        running = list(range(len(idx)))  # rows that have not reached an end-of-sequence token
        for _ in range(max_new_tokens):
            final = lens.trunk(tokens, cache=cache)  # final-normed states of the new tokens
            tokens = mx.argmax(lens.unembed(final[:, -1]), axis=-1).astype(mx.int32)[:, None]
            new = tokens[:, 0].tolist()
            for r in running:
                rows[r].append(new[r])
            running = [r for r in running if new[r] not in stops and "\n" not in tokenizer.decode(rows[r])]
            if not running:
                break
        for r, i in enumerate(idx):
            ids = rows[r]
            cut = next((j for j, t in enumerate(ids) if t in stops), len(ids))
            out[i] = tokenizer.decode(ids[:cut]).split("\n", 1)[0]
    return out


def answer_correct(generated: str, answer: str) -> bool:
    """Exact: the text up to the stop (an end-of-sequence token or a newline), stripped, is the answer's
    integer ("560" or "56 is it" for "56" are wrong)."""
    return generated.split("\n", 1)[0].strip() == answer


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n`` (95% for the default ``z``); ``(0, 1)`` when n = 0.

    Why Wilson: unlike ``p +- z * se`` it stays inside [0, 1] and is honest at 0/8 and 8/8."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at k = 0 (k = n) the bound is exactly 0 (1); the formula leaves float dust like 3e-18 there
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


@dataclass
class AnswerAccuracy:
    """Greedy answer accuracy, exact (the text up to the stop is the integer): the headline answer metric."""

    accuracy: float  # fraction whose greedy answer is exactly the integer (answer_correct)
    by_class: dict[str, float]  # exact accuracy per operation
    correct: int  # k of ``total``: with ``total``, what ``interval`` needs
    total: int
    by_class_counts: dict[str, tuple[int, int]]  # per operation: (correct, total)
    examples: list[tuple[str, str, str]]  # (prompt, expected, generated up to its stop) for the first few samples

    def interval(self, label: str | None = None) -> tuple[float, float]:
        """Wilson 95% interval of the accuracy, overall or of one operation."""
        return wilson(self.correct, self.total) if label is None else wilson(*self.by_class_counts[label])


def answer_accuracy(lens: LogitLens, tokenizer: Any, samples: Sequence[Sample]) -> AnswerAccuracy:
    """Greedy answers of ``samples`` scored exactly, overall and per operation, with the counts."""
    gen = greedy_answers(lens, tokenizer, samples)
    exact = np.array([answer_correct(g, s.answer) for g, s in zip(gen, samples)])
    labels = np.array([s.label for s in samples])
    counts = {c: (int(exact[labels == c].sum()), int((labels == c).sum())) for c in CLASSES if (labels == c).any()}
    examples = [(s.prompt, s.answer, g) for s, g in list(zip(samples, gen))[:8]]
    return AnswerAccuracy(
        accuracy=float(exact.mean()),
        by_class={c: k / n for c, (k, n) in counts.items()},
        correct=int(exact.sum()),
        total=len(samples),
        by_class_counts=counts,
        examples=examples,
    )


def answer_nll(
    lens: LogitLens,
    tokenizer: Any,
    samples: Sequence[Sample],
    class_tokens: ClassTokens,
    terminator: str = "eos",
    chunk: int = 64,
) -> float:
    """Teacher-forced answer NLL per token over ``samples`` (terminator included): the answer loss of
    training, token-weighted over all samples. Unlike greedy accuracy it moves before a model gets answers
    right, so it shows whether the adapter hurt or helped answering at all."""
    total, count = 0.0, 0.0
    for i in range(0, len(samples), chunk):
        batch = make_batch(tokenizer, samples[i : i + chunk], class_tokens, terminator=terminator)
        _, final = forward_hidden(lens.model, batch.tokens)
        nll, _ = teacher_forced_answers(lens, batch, final)
        total += float(nll.sum())
        count += batch.answer_targets.size
    return total / max(count, 1.0)


def teacher_forced_answers(lens: LogitLens, batch: Batch, final: mx.array) -> tuple[np.ndarray, np.ndarray]:
    """Per problem of ``batch`` (with answers), from the final-normed states ``final`` (B, T, D) of its forward:
    (the summed NLL of its answer tokens, terminator included; whether the argmax at every one of those positions
    is the answer token). The second is exact greedy decoding without decoding: greedy output is the answer's
    tokens followed by the terminator exactly when, teacher-forced, each of them is the argmax at its position
    (each greedy step sees the prefix teacher forcing gives it, as long as every earlier step was right). It is
    stricter than ``answer_correct``, which also accepts another tokenisation of the digits or a newline stop. With
    no terminator (``"none"``) it says that greedy output starts with the answer's tokens."""
    logits = lens.unembed(final[batch.answer_rows, batch.answer_pos]).astype(mx.float32)
    nll = np.array(cross_entropy(logits, batch.answer_targets), dtype=np.float64)
    wrong = np.array(mx.argmax(logits, axis=-1) != batch.answer_targets)
    rows = np.array(batch.answer_rows)
    nll_sum, misses = np.zeros(batch.size), np.zeros(batch.size)
    np.add.at(nll_sum, rows, nll)
    np.add.at(misses, rows, wrong)
    return nll_sum, misses == 0


def interval_of(p: float, n: int) -> list[float]:
    """The Wilson 95% interval of an accuracy ``p`` measured on ``n`` items, as ``[lo, hi]`` (JSON's form)."""
    return list(wilson(round(p * n), n))


@dataclass
class LayerAccuracy:
    """The lens at one layer on a prompt set: full-vocab top-1 and class-restricted accuracy, out of ``n``."""

    layer: int
    n: int
    top1_accuracy: float
    restricted_accuracy: float
    prob: float  # mean P(correct class token)


def layer_accuracy(lens: LogitLens, tokenizer: Any, samples: Sequence[Sample], class_tokens: ClassTokens,
                   layer: int) -> LayerAccuracy:
    """The lens at ``layer`` only, on ``samples`` (e.g. the word-prompt transfer set)."""
    r = lens_readout(lens, tokenizer, samples, class_tokens, [layer], top_k=1)
    at = lens_stats(r, [s.target_index for s in samples]).at(layer)
    return LayerAccuracy(layer, len(samples), at["top1_acc"], at["restricted_acc"], at["prob"])


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
    answer_nll: float | None = None  # held-out teacher-forced answer NLL per token, terminator included
    words: LayerAccuracy | None = None  # cross-format transfer: the held-out problems as word prompts
    general: GeneralText | None = None  # collateral damage on the shipped general text

    @property
    def answer_accuracy(self) -> float | None:
        """Exact greedy answer accuracy on the held-out set; None when answers were not measured."""
        return self.answers.accuracy if self.answers else None

    @property
    def heldout_n(self) -> int:
        """Held-out problems the held-out accuracies are fractions of."""
        return self.lens.n

    def intervals(self) -> dict[str, Any]:
        """The 95% Wilson interval ``[lo, hi]`` of every accuracy, keyed ``<accuracy's JSON name>_ci``."""
        a, w, n = self.answers, self.words, self.heldout_n
        return {
            "canonical_accuracy_ci": list(wilson(self.canonical_correct, len(self.canonical))),
            "heldout_restricted_accuracy_ci": interval_of(self.heldout_restricted_accuracy, n),
            "heldout_top1_accuracy_ci": interval_of(self.heldout_top1_accuracy, n),
            "answer_accuracy_ci": list(a.interval()) if a else None,
            "answer_accuracy_by_class_ci": {c: list(a.interval(c)) for c in a.by_class_counts} if a else None,
            "words_top1_accuracy_ci": interval_of(w.top1_accuracy, w.n) if w else None,
            "words_restricted_accuracy_ci": interval_of(w.restricted_accuracy, w.n) if w else None,
        }

    def summary(self) -> dict[str, Any]:
        """The headline numbers (``baseline`` and ``final`` of ``introspect dual-reward --json``): the lens half,
        the answer half, cross-format transfer and collateral damage, every accuracy with its interval."""
        a, w, g = self.answers, self.words, self.general
        ci = self.intervals()
        return {
            "canonical_correct": self.canonical_correct,
            "canonical_accuracy_ci": ci["canonical_accuracy_ci"],
            "heldout_n": self.heldout_n,
            "heldout_restricted_accuracy": self.heldout_restricted_accuracy,
            "heldout_restricted_accuracy_ci": ci["heldout_restricted_accuracy_ci"],
            "heldout_top1_accuracy": self.heldout_top1_accuracy,
            "heldout_top1_accuracy_ci": ci["heldout_top1_accuracy_ci"],
            "heldout_prob": self.heldout_prob,
            "answer_accuracy": self.answer_accuracy,
            "answer_accuracy_by_class": a.by_class if a else None,
            "answer_accuracy_ci": ci["answer_accuracy_ci"],
            "answer_accuracy_by_class_ci": ci["answer_accuracy_by_class_ci"],
            "answer_nll": self.answer_nll,
            "words_top1_accuracy": w.top1_accuracy if w else None,
            "words_top1_accuracy_ci": ci["words_top1_accuracy_ci"],
            "words_restricted_accuracy": w.restricted_accuracy if w else None,
            "words_restricted_accuracy_ci": ci["words_restricted_accuracy_ci"],
            "general_perplexity": g.perplexity if g else None,
            "kl_general": g.kl if g else None,
            "canonical": [asdict(r) for r in self.canonical],
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lens": self.lens.to_dict(), "answer_accuracy": self.answer_accuracy,
                "answer_accuracy_interval": list(self.answers.interval()) if self.answers else None,
                **self.intervals()}


def evaluate(
    lens: LogitLens,
    tokenizer: Any,
    class_tokens: ClassTokens,
    heldout: Sequence[Sample],
    canonical: Sequence[Sample],
    layer: int,
    answers: bool = True,
    terminator: str = "eos",
    words: Sequence[Sample] | None = None,
    general: bool = False,
    context_length: int | None = None,
) -> Evaluation:
    """Canonical table + held-out lens metrics at ``layer`` (+ greedy answer accuracy and the answer NLL,
    whose targets end with ``terminator``; + the lens at ``layer`` on the ``words`` prompts; + with ``general``,
    collateral damage on the shipped general text, in windows that fit ``context_length``)."""
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
        answer_nll=answer_nll(lens, tokenizer, heldout, class_tokens, terminator) if answers else None,
        words=layer_accuracy(lens, tokenizer, words, class_tokens, layer) if words else None,
        general=general_text_metrics(lens.model, tokenizer, context_length=context_length) if general else None,
    )
