"""Prompts -> tokens: class-token resolution and padded batches with the positions every loss reads.

Prompt and answer are encoded *separately* and concatenated. Why: encoding ``"7 * 8 = 56"`` in one go
can merge the prompt's trailing space into the answer's first token, which would move "the last prompt
token" between training and evaluation. Encoded separately, the classification position is the same
token whether the answer follows (training) or not (evaluation, generation).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from .data import CLASSES, Sample
from .errors import LazarusError


@dataclass(frozen=True)
class ClassTokens:
    """One vocabulary id per class word: the training target and every later lens readout."""

    words: tuple[str, ...]  # class words in class-index order
    ids: tuple[int, ...]  # token id per word
    strings: tuple[str, ...]  # the token as text (e.g. " subtract"), so users see what is scored
    single: tuple[bool, ...]  # False where the word is several tokens and only the first one is used

    def as_dict(self) -> dict[str, int]:
        return dict(zip(self.words, self.ids))

    def describe(self) -> str:
        """``{'multiply': 48859 ('multiply'), ...}``: ids with the token strings."""
        return "{" + ", ".join(f"'{w}': {i} ({s!r})" for w, i, s in zip(self.words, self.ids, self.strings)) + "}"


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Prompt ids with the tokenizer's default special tokens (BOS if the model uses one)."""
    return list(tokenizer.encode(text))


def encode_answer(tokenizer: Any, text: str) -> list[int]:
    """Answer ids, no special tokens (they continue the prompt)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def resolve_word(tokenizer: Any, word: str) -> tuple[int, str, bool]:
    """(id, token string, single) for a word: the bare word if it is one token, else with a leading space,
    else the first sub-token of the bare word (single=False)."""
    if not word or not word.strip():
        raise LazarusError("a target word must not be empty")
    for form in (word, " " + word):
        ids = encode_answer(tokenizer, form)
        if len(ids) == 1:
            return ids[0], tokenizer.decode(ids), True
    ids = encode_answer(tokenizer, word)
    if not ids:
        raise LazarusError(f"the tokenizer cannot encode the target word '{word}'")
    return ids[0], tokenizer.decode(ids[:1]), False


def resolve_class_tokens(tokenizer: Any, words: Sequence[str] = CLASSES) -> ClassTokens:
    """Resolve one id per class word (SPEC "Class tokens"); warns for multi-token words."""
    resolved = [resolve_word(tokenizer, w) for w in words]
    for w, (i, s, single) in zip(words, resolved):
        if not single:
            warnings.warn(f"'{w}' is not a single token; using its first sub-token {s!r} ({i})", stacklevel=2)
    ids = [r[0] for r in resolved]
    if len(set(ids)) != len(ids):
        raise LazarusError(f"class words {list(words)} do not map to distinct tokens ({ids})")
    return ClassTokens(tuple(words), tuple(ids), tuple(r[1] for r in resolved), tuple(r[2] for r in resolved))


def class_tokens_from_ids(tokenizer: Any, ids: Mapping[str, int]) -> ClassTokens:
    """The class tokens a run was trained with, from its saved ``{word: id}``. Never re-resolved: SPEC pins
    the same ids for training and every later readout, even if resolution rules change."""
    words = tuple(ids)
    values = tuple(int(ids[w]) for w in words)
    return ClassTokens(words, values, tuple(tokenizer.decode([i]) for i in values), tuple(True for _ in words))


@dataclass
class Batch:
    """Right-padded token batch. Causal attention never looks right, so padding needs no attention mask:
    real tokens see exactly what they would see unpadded; pads are only excluded from the losses."""

    tokens: mx.array  # (B, T) int32 prompt [+ answer] ids, right-padded
    prompt_last: mx.array  # (B,) index of the last prompt token: the classification position
    answer_pos: mx.array  # (B, A) positions whose next-token prediction is an answer token
    answer_targets: mx.array  # (B, A) the answer token each of those positions must predict
    answer_mask: mx.array  # (B, A) 1.0 for real answer tokens, 0.0 for padding
    labels: mx.array  # (B,) class index per row
    class_ids: mx.array  # (B,) class-token id per row (the classification target)

    @property
    def size(self) -> int:
        return self.tokens.shape[0]


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def prompt_batch(tokenizer: Any, prompts: Sequence[str]) -> tuple[mx.array, mx.array]:
    """Free-text prompts -> (right-padded tokens (B, T), index of each prompt's last token (B,))."""
    if not prompts:
        raise LazarusError("the prompt list is empty")
    rows = [encode_prompt(tokenizer, p) for p in prompts]
    if any(not r for r in rows):
        raise LazarusError("a prompt encodes to no tokens")
    width = max(len(r) for r in rows)
    tokens = [r + [_pad_id(tokenizer)] * (width - len(r)) for r in rows]
    return mx.array(tokens, dtype=mx.int32), mx.array([len(r) - 1 for r in rows], dtype=mx.int32)


def make_batch(
    tokenizer: Any, samples: Sequence[Sample], class_tokens: ClassTokens, with_answers: bool = True
) -> Batch:
    """Encode ``samples`` into one right-padded batch (prompts only when ``with_answers`` is False)."""
    if not samples:
        raise LazarusError("cannot build a batch from an empty list of prompts")
    pad = _pad_id(tokenizer)
    rows, last, ans = [], [], []
    for s in samples:
        p = encode_prompt(tokenizer, s.prompt)
        a = encode_answer(tokenizer, s.answer) if with_answers else []
        rows.append(p + a)
        last.append(len(p) - 1)
        ans.append(a)
    width = max(len(r) for r in rows)
    a_width = max(1, max(len(a) for a in ans))
    tokens = [r + [pad] * (width - len(r)) for r in rows]
    # Position last+j predicts answer token j (logits at t predict token t+1); padded slots point at the
    # last prompt token and are masked out.
    pos = [[lp + j if j < len(a) else lp for j in range(a_width)] for lp, a in zip(last, ans)]
    tgt = [[a[j] if j < len(a) else pad for j in range(a_width)] for a in ans]
    mask = [[1.0 if j < len(a) else 0.0 for j in range(a_width)] for a in ans]
    labels = [CLASSES.index(s.label) for s in samples]
    return Batch(
        tokens=mx.array(tokens, dtype=mx.int32),
        prompt_last=mx.array(last, dtype=mx.int32),
        answer_pos=mx.array(pos, dtype=mx.int32),
        answer_targets=mx.array(tgt, dtype=mx.int32),
        answer_mask=mx.array(mask, dtype=mx.float32),
        labels=mx.array(labels, dtype=mx.int32),
        class_ids=mx.array([class_tokens.ids[i] for i in labels], dtype=mx.int32),
    )
