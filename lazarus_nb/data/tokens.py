"""Prompts -> tokens: class-token resolution and padded batches with the positions every loss reads.

An example is encoded the way the model reads text: ``prompt + answer`` in one call with the tokenizer's own
defaults (BOS where the tokenizer adds one), then the prompt is located as a prefix of that encoding and the
answer tokens are what follows, plus the end-of-sequence token when the terminator is ``"eos"``. Why jointly:
SentencePiece tokenizers with a dummy prefix (Llama-2, TinyLlama, Mistral) turn a lone ``"56"`` into
``'▁', '5', '6'``, so separately encoded pieces would train the last prompt token to predict a stray ``'▁'``
that never occurs in real text. Why the prefix check: the classification position is the last token of the
prompt's *own* encoding (what evaluation and generation see); if a tokenizer merges the prompt's end into the
answer (GPT-2's ``' 56'``), no token is "the last prompt token" in both, and we refuse rather than guess.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from lazarus_nb.data.pairs import Pair, check_pair, segments
from lazarus_nb.data.prompts import CLASSES, TERMINATORS, Sample
from lazarus_nb.errors import LazarusError


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


# The longest prompt (in tokens) the workbench runs the model on, whatever the model's context: a logit-lens
# readout of the embedded model on 2 busy CPU cores took 3.4 s at 512 tokens, 8.5 s at 1,024 and grows faster
# than linearly (docs/science.md "Prompt length"); our prompts are ~8 tokens, a typed paragraph a few hundred.
MAX_PROMPT_TOKENS = 512


def tokenizer_name(tokenizer: Any) -> str:
    """``TokenizersBackend '/path/or/hub-id'``: the tokenizer's class and where it was loaded from, for errors."""
    inner = getattr(tokenizer, "_tokenizer", tokenizer)  # mlx-lm's TokenizerWrapper holds the HF tokenizer
    where = getattr(inner, "name_or_path", "") or ""
    return f"{type(inner).__name__} '{where}'" if where else type(inner).__name__


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The vocabulary entries of ``ids`` as stored (``'▁='``, ``'Ġ'``): what the model reads, spaces visible."""
    return [str(t) for t in tokenizer.convert_ids_to_tokens(list(ids))]


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Prompt ids with the tokenizer's default special tokens (BOS if the model uses one)."""
    return list(tokenizer.encode(text))


def encode_answer(tokenizer: Any, text: str) -> list[int]:
    """Ids of a text with no special tokens: the class words' forms (never an example's answer, see
    ``encode_example``)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def terminator_ids(tokenizer: Any, terminator: str) -> list[int]:
    """The ids appended to every answer: ``[eos_token_id]`` for ``"eos"``, ``[]`` for ``"none"``."""
    if terminator not in TERMINATORS:
        raise LazarusError(f"unknown answer terminator '{terminator}'; use one of: {', '.join(TERMINATORS)}")
    if terminator == "none":
        return []
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise LazarusError(
            f"the tokenizer {tokenizer_name(tokenizer)} has no end-of-sequence token; use answer terminator 'none'"
        )
    return [int(eos)]


def stop_ids(tokenizer: Any) -> set[int]:
    """Ids that end a greedy answer: every end-of-sequence id the tokenizer declares (mlx-lm may add more
    than the one ``terminator_ids`` appends, e.g. end-of-turn tokens of chat models)."""
    ids = {int(i) for i in (getattr(tokenizer, "eos_token_ids", None) or ())}
    eos = getattr(tokenizer, "eos_token_id", None)
    return ids | ({int(eos)} if eos is not None else set())


def encode_example(tokenizer: Any, prompt: str, answer: str, terminator: str = "eos") -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one example (docs/science.md "Tokenising an example").

    ``prompt + answer`` is encoded in one call with the tokenizer's defaults; the prompt's own encoding must
    be a prefix of it (else LazarusError naming the tokenizer); the answer ids are the rest, followed by the
    terminator's ids. So the answer loss scores exactly the tokens a model reads after the prompt."""
    p = encode_prompt(tokenizer, prompt)
    joint = list(tokenizer.encode(prompt + answer))
    if joint[: len(p)] != p or len(joint) == len(p):
        raise LazarusError(
            f"the tokenizer {tokenizer_name(tokenizer)} does not encode the prompt {prompt!r} as a prefix of "
            f"{prompt + answer!r} ({token_strings(tokenizer, p)} against {token_strings(tokenizer, joint)}), so no "
            "token is the last prompt token both with and without the answer; this tokenizer is not supported"
        )
    return p, joint[len(p) :] + terminator_ids(tokenizer, terminator)


def trained_tokens(tokenizer: Any, sample: Sample, terminator: str = "eos") -> dict[str, Any]:
    """What training reads for ``sample``: ``{"prompt", "answer", "prompt_tokens", "answer_tokens",
    "prompt_ids", "answer_ids"}`` (token strings as in the vocabulary; the answer includes the terminator)."""
    p, a = encode_example(tokenizer, sample.prompt, sample.answer, terminator)
    return {"prompt": sample.prompt, "answer": sample.answer, "prompt_tokens": token_strings(tokenizer, p),
            "answer_tokens": token_strings(tokenizer, a), "prompt_ids": p, "answer_ids": a}


def resolve_word(tokenizer: Any, word: str, warn: bool = False) -> tuple[int, str, bool]:
    """(id, token string, single) for a word: the bare word if it is one token, else with a leading space,
    else the first sub-token of the bare word (single=False; with ``warn``, a warning says so to the caller
    of the public function that asked)."""
    if not word or not word.strip():
        raise LazarusError("a target word must not be empty")
    for form in (word, " " + word):
        ids = encode_answer(tokenizer, form)
        if len(ids) == 1:
            return ids[0], tokenizer.decode(ids), True
    ids = encode_answer(tokenizer, word)
    if not ids:
        raise LazarusError(f"the tokenizer cannot encode the target word '{word}'")
    first = tokenizer.decode(ids[:1])
    if warn:
        warnings.warn(f"'{word}' is not a single token; using its first sub-token {first!r} ({ids[0]})", stacklevel=3)
    return ids[0], first, False


def resolve_class_tokens(tokenizer: Any, words: Sequence[str] = CLASSES) -> ClassTokens:
    """Resolve one id per class word (docs/science.md "Class tokens"); warns for multi-token words."""
    resolved = []
    for w in words:  # a loop, not a comprehension: the warning's stacklevel must reach our caller
        resolved.append(resolve_word(tokenizer, w, warn=True))
    ids = [r[0] for r in resolved]
    if len(set(ids)) != len(ids):
        raise LazarusError(f"class words {list(words)} do not map to distinct tokens ({ids})")
    return ClassTokens(tuple(words), tuple(ids), tuple(r[1] for r in resolved), tuple(r[2] for r in resolved))


def resolve_targets(tokenizer: Any, targets: Sequence[str], class_tokens: ClassTokens | None = None) -> dict[str, int]:
    """``{target: id}`` for a lens readout: a class word of ``class_tokens`` (a checkpoint's) uses exactly its
    id, never a re-resolved one (docs/science.md "Class tokens"); any other target is resolved like a class word and
    warns when it is not a single token (only its first sub-token is read)."""
    if not targets:
        raise LazarusError("give at least one target word")
    ids = class_tokens.as_dict() if class_tokens is not None else {}
    out = {}
    for w in targets:  # a loop, not a comprehension: the warning's stacklevel must reach our caller
        out[w] = ids[w] if w in ids else resolve_word(tokenizer, w, warn=True)[0]
    return out


def class_tokens_from_ids(tokenizer: Any, ids: Mapping[str, int]) -> ClassTokens:
    """The class tokens a run was trained with, from its saved ``{word: id}``. Never re-resolved:
    docs/science.md "Class tokens" pins the same ids for training and every later readout, even if resolution
    rules change."""
    words = tuple(ids)
    values = tuple(int(ids[w]) for w in words)
    return ClassTokens(words, values, tuple(tokenizer.decode([i]) for i in values), tuple(True for _ in words))


@dataclass
class Batch:
    """Right-padded token batch. Causal attention never looks right, so padding needs no attention mask:
    real tokens see exactly what they would see unpadded; pads are only excluded from the losses."""

    tokens: mx.array  # (B, T) int32 prompt [+ answer] ids, right-padded
    prompt_last: mx.array  # (B,) index of the last prompt token: the classification position
    # The N answer tokens of the whole batch, flat and without padded slots, so no loss computes logits it
    # then masks out (a (B, longest answer) layout had 25% padded slots on a default batch).
    answer_rows: mx.array  # (N,) the row of each answer token
    answer_pos: mx.array  # (N,) the position whose next-token prediction is that answer token
    answer_targets: mx.array  # (N,) the answer token that position must predict
    labels: mx.array  # (B,) target class index per row (Sample.target_index)
    class_ids: mx.array  # (B,) class-token id per row (the classification target)

    @property
    def size(self) -> int:
        return self.tokens.shape[0]


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def prompt_limit(context_length: int | None) -> int:
    """The most tokens a prompt may have: the model's context (``LoadedModel.context_length``), and never more
    than ``MAX_PROMPT_TOKENS`` (the CPU cap; a model without a known context gets only the cap)."""
    return MAX_PROMPT_TOKENS if context_length is None else min(context_length, MAX_PROMPT_TOKENS)


def check_prompt_length(n_tokens: int, prompt: str, context_length: int | None, which: str = "the prompt") -> None:
    """Refuse (one sentence naming the limit, the length and the prompt) a prompt of more than
    ``prompt_limit(context_length)`` tokens. The one rule for user text: every path that runs the model on a
    prompt (``encode_prompts``) calls it before any forward pass."""
    limit = prompt_limit(context_length)
    if n_tokens <= limit:
        return
    if limit == context_length:
        why = "the model's context length"
    else:
        known = f"; the model's context is {context_length:,} positions" if context_length is not None else ""
        why = f"the CPU cap per prompt{known}"
    shown = prompt if len(prompt) <= 24 else prompt[:20] + "…"
    raise LazarusError(f"{which} ({shown!r}, {len(prompt):,} characters) is {n_tokens:,} tokens long, over the limit "
                       f"of {limit:,} tokens ({why}); shorten it")


def encode_prompts(tokenizer: Any, prompts: Sequence[str], context_length: int | None) -> list[list[int]]:
    """Every prompt's ids (``encode_prompt``), all checked before any of them reaches the model: the list is not
    empty, no prompt encodes to nothing, none is longer than ``prompt_limit(context_length)``."""
    if not prompts:
        raise LazarusError("the prompt list is empty")
    rows = [encode_prompt(tokenizer, p) for p in prompts]
    if any(not r for r in rows):
        raise LazarusError("a prompt encodes to no tokens")
    for i, (row, text) in enumerate(zip(rows, prompts)):
        check_prompt_length(len(row), text, context_length,
                            "the prompt" if len(prompts) == 1 else f"prompt {i + 1} of {len(prompts)}")
    return rows


def pad_prompts(tokenizer: Any, rows: Sequence[Sequence[int]]) -> tuple[mx.array, mx.array]:
    """Encoded prompts -> (right-padded tokens (B, T), index of each prompt's last token (B,))."""
    width = max(len(r) for r in rows)
    tokens = [list(r) + [_pad_id(tokenizer)] * (width - len(r)) for r in rows]
    return mx.array(tokens, dtype=mx.int32), mx.array([len(r) - 1 for r in rows], dtype=mx.int32)


def prompt_batch(tokenizer: Any, prompts: Sequence[str], context_length: int | None) -> tuple[mx.array, mx.array]:
    """Free-text prompts -> (right-padded tokens (B, T), index of each prompt's last token (B,)), each prompt
    checked against the model's ``context_length`` and the CPU cap first (``encode_prompts``)."""
    return pad_prompts(tokenizer, encode_prompts(tokenizer, prompts, context_length))


def make_batch(
    tokenizer: Any,
    samples: Sequence[Sample],
    class_tokens: ClassTokens,
    with_answers: bool = True,
    terminator: str = "eos",
) -> Batch:
    """Encode ``samples`` into one right-padded batch (prompts only when ``with_answers`` is False). Answers
    are encoded by ``encode_example`` and end with the ``terminator``'s ids (part of the scored targets)."""
    if not samples:
        raise LazarusError("cannot build a batch from an empty list of prompts")
    pad = _pad_id(tokenizer)
    rows, last, ans = [], [], []
    for s in samples:
        if with_answers:
            p, a = encode_example(tokenizer, s.prompt, s.answer, terminator)
        else:
            p, a = encode_prompt(tokenizer, s.prompt), []
        rows.append(p + a)
        last.append(len(p) - 1)
        ans.append(a)
    width = max(len(r) for r in rows)
    tokens = [r + [pad] * (width - len(r)) for r in rows]
    # Position last+j predicts answer token j (logits at t predict token t+1).
    flat = [(r, lp + j, t) for r, (lp, a) in enumerate(zip(last, ans)) for j, t in enumerate(a)]
    answer_rows, pos, tgt = zip(*flat) if flat else ((), (), ())
    labels = [s.target_index for s in samples]
    return Batch(
        tokens=mx.array(tokens, dtype=mx.int32),
        prompt_last=mx.array(last, dtype=mx.int32),
        answer_rows=mx.array(answer_rows, dtype=mx.int32),
        answer_pos=mx.array(pos, dtype=mx.int32),
        answer_targets=mx.array(tgt, dtype=mx.int32),
        labels=mx.array(labels, dtype=mx.int32),
        class_ids=mx.array([class_tokens.ids[i] for i in labels], dtype=mx.int32),
    )


def token_segments(tokenizer: Any, parts: Sequence[str]) -> list[int]:
    """For each token of ``encode_prompt("".join(parts))``, the index of the part it starts in (-1: a token the
    tokenizer puts before any text, e.g. BOS). A token that merges the end of one part with the next belongs to the
    later part: the part ends where the encoding of the text up to it stops being a prefix of the whole."""
    full = encode_prompt(tokenizer, "".join(parts))

    def shared(ids: list[int]) -> int:
        n = 0
        while n < min(len(ids), len(full)) and ids[n] == full[n]:
            n += 1
        return n

    ends = [shared(encode_prompt(tokenizer, "".join(parts[:k]))) for k in range(len(parts))] + [len(full)]
    return [next(k for k in range(len(ends)) if j < max(ends[: k + 1])) - 1 for j in range(len(full))]


@dataclass(frozen=True)
class PairIds:
    """A patching pair as token ids: the two prompts (equal lengths) and the two answers (terminator included)."""

    source_prompt: list[int]
    target_prompt: list[int]
    source_answer: list[int]
    target_answer: list[int]
    first: int  # the first position where the prompts differ (the operator): every block output before it is equal
    slots: list[tuple[str, int]]  # per position: (the prompt part it starts in, its index in that part: 1, 2, ...)


def encode_pair(tokenizer: Any, pair: Pair, terminator: str = "eos") -> PairIds:
    """Encode a patching pair (``encode_example`` for each prompt with its own answer). One sentence, in this order,
    unless the prompts have the same number of tokens and then differ only in the operator
    (``data.pairs.check_pair``)."""
    s_prompt, s_answer = encode_example(tokenizer, pair.source.prompt, pair.source.answer, terminator)
    t_prompt, t_answer = encode_example(tokenizer, pair.target.prompt, pair.target.answer, terminator)
    if len(s_prompt) != len(t_prompt):
        raise LazarusError(f"the prompts of a patching pair must have equal token counts (patching copies position by "
                           f"position): {pair.source.prompt!r} is {len(s_prompt)} tokens, {pair.target.prompt!r} is "
                           f"{len(t_prompt)} for the tokenizer {tokenizer_name(tokenizer)}")
    check_pair(pair)
    parts = segments(pair.target)
    names = ["start" if k < 0 else parts[k][0] for k in token_segments(tokenizer, [text for _, text in parts])]
    slots = [(name, names[: j + 1].count(name)) for j, name in enumerate(names)]
    first = next(j for j, (a, b) in enumerate(zip(s_prompt, t_prompt)) if a != b)
    return PairIds(s_prompt, t_prompt, s_answer, t_answer, first, slots)
