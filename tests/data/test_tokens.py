"""Class-token resolution and padded batches (tokens.py), against the real SmolLM2 tokenizer.

Only the tokenizer is loaded (no weights), so these tests are fast; every expectation is recomputed
directly from ``tokenizer.encode`` / ``decode``. Other tokenizer families: tests/data/test_tokenizer_families.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lazarus_nb import LazarusError
from lazarus_nb.data.prompts import CANONICAL, CLASSES, make_sample
from lazarus_nb.data.tokens import (
    MAX_PROMPT_TOKENS,
    encode_example,
    encode_prompts,
    make_batch,
    prompt_batch,
    prompt_limit,
    resolve_class_tokens,
    resolve_targets,
    resolve_word,
    stop_ids,
    terminator_ids,
    trained_tokens,
)

MULTI_TOKEN_WORD = "antidisestablishmentarianism"


@pytest.fixture(scope="module")
def tokenizer(embedded_dir):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(embedded_dir)


def enc(tokenizer, text, special=True):
    return list(tokenizer.encode(text)) if special else list(tokenizer.encode(text, add_special_tokens=False))


# ---------------------------------------------------------------- class tokens


def test_class_tokens_decode_to_their_words_and_are_distinct(tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every default class word must resolve without the multi-token warning
        ct = resolve_class_tokens(tokenizer)
    assert ct.words == CLASSES
    assert len(set(ct.ids)) == 4
    for word, i, s, single in zip(ct.words, ct.ids, ct.strings, ct.single):
        text = tokenizer.decode([i])
        assert text in (word, " " + word), (word, i, text)
        assert s == text
        assert single
        # the chosen form encodes to exactly this one id
        assert enc(tokenizer, text, special=False) == [i]
    assert ct.as_dict() == dict(zip(CLASSES, ct.ids))
    for word, i in zip(ct.words, ct.ids):
        assert f"'{word}': {i}" in ct.describe()


def test_bare_word_is_preferred_over_the_spaced_form(tokenizer):
    # On this tokenizer "subtract" is several tokens but " subtract" is one; "add" is one token bare.
    assert len(enc(tokenizer, "subtract", special=False)) > 1
    (spaced,) = enc(tokenizer, " subtract", special=False)
    assert resolve_word(tokenizer, "subtract") == (spaced, " subtract", True)
    (bare,) = enc(tokenizer, "add", special=False)
    assert resolve_word(tokenizer, "add") == (bare, "add", True)


def test_multi_token_word_warns_and_uses_first_subtoken(tokenizer):
    bare = enc(tokenizer, MULTI_TOKEN_WORD, special=False)
    assert len(bare) > 1 and len(enc(tokenizer, " " + MULTI_TOKEN_WORD, special=False)) > 1
    with pytest.warns(UserWarning, match=MULTI_TOKEN_WORD):
        ct = resolve_class_tokens(tokenizer, ("multiply", MULTI_TOKEN_WORD))
    assert ct.ids[1] == bare[0]
    assert ct.single == (True, False)
    assert ct.strings[1] == tokenizer.decode(bare[:1])


def test_bad_class_words_raise_one_sentence(tokenizer):
    with pytest.raises(LazarusError, match="empty"):
        resolve_word(tokenizer, "  ")
    with pytest.raises(LazarusError, match="distinct"):
        resolve_class_tokens(tokenizer, ("add", "add"))


def samples_of_mixed_lengths():
    # different prompt lengths (1- and 2-digit operands) and answer lengths (1 to 4 digits)
    return [*CANONICAL[:3], make_sample(3, "add", 4), make_sample(50, "multiply", 50), make_sample(12, "divide", 4)]


# ---------------------------------------------------------------- one example


def test_embedded_tokenizer_encodes_the_canonical_example_as_before(tokenizer):
    """SmolLM2 (byte-level BPE, digits split, no BOS): the joint encoding gives exactly the tokens a
    separate encoding of the prompt and the answer gives, plus the terminator '<|im_end|>' (this model's EOS)."""
    p, a = encode_example(tokenizer, "7 * 8 = ", "56")
    assert tokenizer.convert_ids_to_tokens(p) == ["7", "Ġ*", "Ġ", "8", "Ġ=", "Ġ"]
    assert tokenizer.convert_ids_to_tokens(a) == ["5", "6", "<|im_end|>"]
    assert p == enc(tokenizer, "7 * 8 = ") and a == enc(tokenizer, "56", special=False) + [tokenizer.eos_token_id]
    assert encode_example(tokenizer, "7 * 8 = ", "56", "none") == (p, a[:-1])
    assert trained_tokens(tokenizer, CANONICAL[0]) == {
        "prompt": "7 * 8 = ", "answer": "56", "prompt_tokens": ["7", "Ġ*", "Ġ", "8", "Ġ=", "Ġ"],
        "answer_tokens": ["5", "6", "<|im_end|>"], "prompt_ids": p, "answer_ids": a}


def test_joint_encoding_equals_separate_encoding_on_every_default_sample(tokenizer):
    """On SmolLM2 the fix changes no token of any default prompt or answer (only the terminator is new)."""
    from lazarus_nb.data.prompts import train_heldout_split, word_prompts

    train, heldout = train_heldout_split(800, 100, seed=0)
    for s in [*train, *heldout, *CANONICAL, *word_prompts(100)]:
        assert encode_example(tokenizer, s.prompt, s.answer, "none") == (
            enc(tokenizer, s.prompt), enc(tokenizer, s.answer, special=False)), s


def test_terminator_ids_and_stop_ids(tokenizer):
    assert terminator_ids(tokenizer, "eos") == [tokenizer.eos_token_id] == [2]
    assert terminator_ids(tokenizer, "none") == []
    assert tokenizer.eos_token_id in stop_ids(tokenizer)
    with pytest.raises(LazarusError, match="unknown answer terminator 'newline'"):
        terminator_ids(tokenizer, "newline")


def test_tokenizer_without_eos_needs_terminator_none(tokenizer):
    class NoEos:  # the tokenizer's encoding, without an end-of-sequence token
        eos_token_id = None
        name_or_path = "no-eos-tokenizer"

        def encode(self, text, add_special_tokens=True):
            return tokenizer.encode(text, add_special_tokens=add_special_tokens)

    with pytest.raises(LazarusError, match="no-eos-tokenizer.*has no end-of-sequence token; use answer terminator"):
        encode_example(NoEos(), "7 * 8 = ", "56")
    assert encode_example(NoEos(), "7 * 8 = ", "56", "none")[1] == enc(tokenizer, "56", special=False)
    assert stop_ids(NoEos()) == set()


# ---------------------------------------------------------------- batches


def test_make_batch_positions_targets_and_padding(tokenizer):
    samples = samples_of_mixed_lengths()
    ct = resolve_class_tokens(tokenizer)
    b = make_batch(tokenizer, samples, ct)
    tokens = np.array(b.tokens)
    last = np.array(b.prompt_last)
    rows_a, pos, tgt = np.array(b.answer_rows), np.array(b.answer_pos), np.array(b.answer_targets)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    prompts = [enc(tokenizer, s.prompt) for s in samples]
    # the answer's digits then the terminator (on SmolLM2 the digits encode the same alone or after the prompt)
    answers = [enc(tokenizer, s.answer, special=False) + [tokenizer.eos_token_id] for s in samples]
    assert tokens.shape == (len(samples), max(len(p) + len(a) for p, a in zip(prompts, answers)))
    # one flat slot per real answer token, row by row, none for padding
    assert rows_a.tolist() == [r for r, a in enumerate(answers) for _ in a]
    assert pos.shape == tgt.shape == (sum(len(a) for a in answers),)
    assert len({len(a) for a in answers}) > 1 and len({len(p) for p in prompts}) > 1  # padding is exercised
    for r, (p, a) in enumerate(zip(prompts, answers)):
        n = len(p) + len(a)
        assert tokens[r, :n].tolist() == p + a
        assert (tokens[r, n:] == pad).all()
        assert last[r] == len(p) - 1
        assert tokens[r, last[r]] == p[-1]  # the last prompt token is the classification position
        assert tgt[rows_a == r].tolist() == a
        # logits at answer_pos[j] predict token answer_pos[j] + 1, which is answer token j
        assert pos[rows_a == r].tolist() == [len(p) - 1 + j for j in range(len(a))]
        assert tokens[r, pos[rows_a == r] + 1].tolist() == a
    assert np.array(b.labels).tolist() == [CLASSES.index(s.label) for s in samples]
    assert np.array(b.class_ids).tolist() == [ct.as_dict()[s.label] for s in samples]
    assert b.size == len(samples)


def test_make_batch_without_terminator(tokenizer):
    samples = samples_of_mixed_lengths()
    ct = resolve_class_tokens(tokenizer)
    full, bare = make_batch(tokenizer, samples, ct), make_batch(tokenizer, samples, ct, terminator="none")
    n_full = np.bincount(np.array(full.answer_rows), minlength=len(samples))
    n_bare = np.bincount(np.array(bare.answer_rows), minlength=len(samples))
    assert (n_full == n_bare + 1).all()
    tgt = np.array(full.answer_targets)
    assert tgt[np.cumsum(n_full) - 1].tolist() == [tokenizer.eos_token_id] * len(samples)  # each row's last
    assert tokenizer.eos_token_id not in np.array(bare.answer_targets)
    assert np.array_equal(np.array(full.prompt_last), np.array(bare.prompt_last))


def test_make_batch_prompts_only(tokenizer):
    samples = samples_of_mixed_lengths()
    ct = resolve_class_tokens(tokenizer)
    full = make_batch(tokenizer, samples, ct)
    b = make_batch(tokenizer, samples, ct, with_answers=False)
    prompts = [enc(tokenizer, s.prompt) for s in samples]
    tokens = np.array(b.tokens)
    assert tokens.shape == (len(samples), max(len(p) for p in prompts))
    for r, p in enumerate(prompts):
        assert tokens[r, : len(p)].tolist() == p
    assert b.answer_rows.size == b.answer_pos.size == b.answer_targets.size == 0
    # the classification position is the same token whether or not the answer follows
    assert np.array(b.prompt_last).tolist() == np.array(full.prompt_last).tolist()
    ft = np.array(full.tokens)
    for r, last in enumerate(np.array(b.prompt_last)):
        assert ft[r, last] == tokens[r, last] == prompts[r][-1]


def test_prompt_batch_matches_make_batch(tokenizer):
    samples = samples_of_mixed_lengths()
    b = make_batch(tokenizer, samples, resolve_class_tokens(tokenizer), with_answers=False)
    tokens, last = prompt_batch(tokenizer, [s.prompt for s in samples], None)
    assert np.array_equal(np.array(tokens), np.array(b.tokens))
    assert np.array_equal(np.array(last), np.array(b.prompt_last))


# ---------------------------------------------------------------- prompt length: the model's context and the CPU cap


def digits(tokenizer, n_tokens: int) -> str:
    """A prompt of exactly ``n_tokens`` tokens: SmolLM2 encodes every digit as its own token (checked here)."""
    text = ("1234567890" * (n_tokens // 10 + 1))[:n_tokens]
    assert len(enc(tokenizer, text)) == n_tokens
    return text


def test_prompt_limit_is_the_context_and_never_more_than_the_cap():
    assert prompt_limit(None) == MAX_PROMPT_TOKENS  # no context in the config: the cap alone
    assert prompt_limit(64) == 64
    assert prompt_limit(8192) == MAX_PROMPT_TOKENS  # the embedded model's 8,192 positions: the cap decides


@pytest.mark.parametrize("context", [None, 64], ids=["cap", "context"])
def test_a_prompt_over_the_limit_is_refused_naming_limit_length_and_prompt(tokenizer, context):
    limit = prompt_limit(context)
    ok, long = digits(tokenizer, limit), digits(tokenizer, limit + 1)
    assert encode_prompts(tokenizer, ["7 * 8 = ", ok], context) == [enc(tokenizer, "7 * 8 = "), enc(tokenizer, ok)]
    with pytest.raises(LazarusError) as exc:
        encode_prompts(tokenizer, ["7 * 8 = ", long, "1 + 2 = "], context)
    message = str(exc.value)
    assert "\n" not in message and message.count(". ") == 0  # one sentence
    assert f"prompt 2 of 3 ('{long[:20]}…', {limit + 1:,} characters) is {limit + 1:,} tokens long" in message
    assert f"over the limit of {limit:,} tokens" in message
    assert ("the model's context length" in message) == (context is not None)
    assert ("CPU cap" in message) == (context is None)
    with pytest.raises(LazarusError, match=r"^the prompt \('1234"):  # a single prompt is "the prompt"
        prompt_batch(tokenizer, [long], context)


def test_cap_message_names_the_models_context_when_the_cap_is_smaller(tokenizer):
    long = digits(tokenizer, MAX_PROMPT_TOKENS + 1)
    with pytest.raises(LazarusError, match="CPU cap per prompt; the model's context is 8,192 positions"):
        encode_prompts(tokenizer, [long], 8192)


def test_entry_points_refuse_before_the_model_runs(tokenizer):
    """run_lens and run_probe (every prompt, not just the first chunk's) refuse before any forward pass: the
    stand-in model is None, so any forward pass would fail with something else than the sentence."""
    from types import SimpleNamespace

    from lazarus_nb.run.steps import last_token_hidden, run_lens, run_probe

    stub = SimpleNamespace(tokenizer=tokenizer, context_length=None, model=None)
    long = digits(tokenizer, MAX_PROMPT_TOKENS + 1)
    with pytest.raises(LazarusError, match="tokens long"):
        run_lens(stub, ["7 * 8 = ", long], ["add"])
    with pytest.raises(LazarusError, match="prompt 4 of 4"):
        run_probe(stub, ["7 * 8 = ", "2 * 3 = ", "1 + 2 = ", long], [0, 0, 1, 1], ["multiply", "add"])
    with pytest.raises(LazarusError, match="prompt 2 of 2"):
        last_token_hidden(stub, ["7 * 8 = ", long], chunk=1)  # the first chunk alone would be short
    short_context = SimpleNamespace(tokenizer=tokenizer, context_length=16, model=None)  # the model's own limit
    for call in (lambda p: run_lens(short_context, [p], ["add"]),
                 lambda p: run_probe(short_context, ["1 + 2 = ", "3 + 4 = ", "5 * 6 = ", p], [0, 0, 1, 1], "ab")):
        with pytest.raises(LazarusError, match="17 tokens long, over the limit of 16 tokens .the model's context"):
            call(digits(tokenizer, 17))
    with pytest.raises(Exception) as control:  # a short prompt does reach the (missing) model
        run_lens(stub, ["7 * 8 = "], ["add"])
    assert not isinstance(control.value, LazarusError)


def test_empty_batch_is_a_lazarus_error(tokenizer):
    with pytest.raises(LazarusError):
        make_batch(tokenizer, [], resolve_class_tokens(tokenizer))


# ---------------------------------------------------------------- lens targets


def test_resolve_targets_uses_the_checkpoint_ids_for_class_words(tokenizer):
    from lazarus_nb.data.tokens import ClassTokens

    saved = ClassTokens(CLASSES, (101, 102, 103, 104), ("a", "b", "c", "d"), (True,) * 4)  # not what resolves
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = resolve_targets(tokenizer, ["add", "multiply", " the"], saved)
    assert got == {"add": 102, "multiply": 101, " the": enc(tokenizer, " the", special=False)[0]}
    assert resolve_targets(tokenizer, ["add"]) == {"add": resolve_class_tokens(tokenizer).as_dict()["add"]}
    with pytest.raises(LazarusError, match="at least one"):
        resolve_targets(tokenizer, [])


def test_resolve_targets_warns_for_a_multi_token_target_at_the_caller(tokenizer):
    with pytest.warns(UserWarning, match=MULTI_TOKEN_WORD) as record:
        got = resolve_targets(tokenizer, ["add", MULTI_TOKEN_WORD])
    assert got[MULTI_TOKEN_WORD] == enc(tokenizer, MULTI_TOKEN_WORD, special=False)[0]
    assert [r.filename for r in record] == [__file__]  # the warning names the caller's line, not tokens.py
    with pytest.warns(UserWarning) as record:
        resolve_class_tokens(tokenizer, ("multiply", MULTI_TOKEN_WORD))
    assert [r.filename for r in record] == [__file__]
