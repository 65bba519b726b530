"""Steering (measure.steering) against independent computations on the tiny llama: the class means by hand, alpha 0
is the unsteered model, a steered alpha equals adding the vector by hand in a plain forward, and the problems valid
for both operations."""

from __future__ import annotations

from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest

from lazarus_nb.data.prompts import CLASSES, make_sample
from lazarus_nb.data.tokens import encode_example, encode_prompt, make_batch, resolve_class_tokens
from lazarus_nb.measure.evaluate import teacher_forced_answers
from lazarus_nb.measure.steering import class_means, steer, valid_pairs
from lazarus_nb.model.hooks import edited, forward_hidden
from lazarus_nb.model.lens import LogitLens

LAYER, LENS_LAYER = 1, 2
TRAIN = [make_sample(7, "multiply", 8), make_sample(12, "multiply", 5), make_sample(30, "multiply", 2),
         make_sample(23, "add", 45), make_sample(17, "add", 38)]
HELD = [make_sample(a, "add", b) for a, b in [(3, 4), (11, 20), (40, 9), (27, 31), (8, 45), (19, 2), (33, 33),
                                               (50, 1)]]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def log_prob(model, tokenizer, prompt: str, answer: str, add=None) -> float:
    """log P(answer + terminator | prompt) from one plain forward of the unpadded example; ``add`` (D,) is added to
    block LAYER's output at the last prompt token."""
    p, a = encode_example(tokenizer, prompt, answer)
    last = len(p) - 1

    def edit(h):
        mask = (mx.arange(h.shape[1]) == last).astype(h.dtype)[None, :, None]
        return h + add * mask

    with edited(model, {LAYER: edit} if add is not None else {}):
        logp = log_softmax(np.array(model(mx.array([p + a]))[0]))
    return float(sum(logp[last + j, t] for j, t in enumerate(a)))


def test_class_means_by_hand(tiny_llama):
    means = class_means(tiny_llama, TRAIN, LAYER, ["multiply", "add"])
    assert set(means) == {"multiply", "add"}
    for op, mean in means.items():
        rows = []
        for s in TRAIN:
            if s.label == op:
                ids = encode_prompt(tiny_llama.tokenizer, s.prompt)
                hidden, _ = forward_hidden(tiny_llama.model, mx.array([ids]))
                rows.append(np.array(hidden[LAYER][0, -1], dtype=np.float64))
        assert np.allclose(mean, np.mean(rows, axis=0), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no prompts of 'divide'"):
        class_means(tiny_llama, TRAIN, LAYER, ["divide"])


def test_alpha_zero_is_the_unsteered_model_and_a_steered_alpha_adds_the_vector(tiny_llama):
    tok = tiny_llama.tokenizer
    lens = LogitLens(tiny_llama.model)
    tokens = resolve_class_tokens(tok)
    means = class_means(tiny_llama, TRAIN, LAYER, ["multiply", "add"])
    vector = means["multiply"] - means["add"]
    pairs = valid_pairs(HELD, "multiply")
    points = steer(lens, tok, pairs, vector, LAYER, LENS_LAYER, [0.0, 2.5], tokens, CLASSES.index("multiply"))
    zero, steered = points
    assert [p.alpha for p in points] == [0.0, 2.5] and zero.n == len(HELD)
    # alpha 0 is exactly the unsteered model: the plain forward of the same batches, bit for bit
    for batch_answers, got in (([b for b, _ in pairs], zero.p_from), ([replace(b, answer=a.answer) for b, a in pairs],
                                                                     zero.p_to)):
        batch = make_batch(tok, batch_answers, tokens)
        nll, _ = teacher_forced_answers(lens, batch, lens.trunk(batch.tokens))
        assert np.exp(-nll).tolist() == got
    add = mx.array((2.5 * vector).astype(np.float32))
    for i, (b, a) in enumerate(pairs):  # log probabilities: the tiny model's are ~1e-15, below approx's abs floor
        assert np.log(zero.p_to[i]) == pytest.approx(log_prob(tiny_llama.model, tok, b.prompt, a.answer), abs=1e-3)
        assert np.log(zero.p_from[i]) == pytest.approx(log_prob(tiny_llama.model, tok, b.prompt, b.answer), abs=1e-3)
        assert np.log(steered.p_to[i]) == pytest.approx(log_prob(tiny_llama.model, tok, b.prompt, a.answer, add),
                                                        abs=1e-3)
        assert np.log(steered.p_from[i]) == pytest.approx(log_prob(tiny_llama.model, tok, b.prompt, b.answer, add),
                                                          abs=1e-3)
    assert np.abs(np.log(steered.p_to) - np.log(zero.p_to)).max() > 0.1  # the vector moved something

    # the lens class at LENS_LAYER, by hand: the class-restricted argmax of the lens on the (un)steered state
    def lens_class(add=None) -> list[int]:
        out = []
        for b, _ in pairs:
            ids = encode_prompt(tok, b.prompt)
            last = len(ids) - 1

            def edit(h, last=last):
                return h + add * (mx.arange(h.shape[1]) == last).astype(h.dtype)[None, :, None]

            with edited(tiny_llama.model, {LAYER: edit} if add is not None else {}):
                hidden, _ = forward_hidden(tiny_llama.model, mx.array([ids]))
            logits = np.array(lens(hidden[LENS_LAYER][0, -1]))
            out.append(int(np.argmax(logits[list(tokens.ids)])))
        return out

    plain, moved = lens_class(), lens_class(add)
    assert zero.lens_to == sum(c == CLASSES.index("multiply") for c in plain)
    for k in range(len(CLASSES)):  # every class's count, so not only a count that may be 0 either way
        again = steer(lens, tok, pairs, vector, LAYER, LENS_LAYER, [0.0, 2.5], tokens, k)
        assert again[0].lens_to == sum(c == k for c in plain) and again[1].lens_to == sum(c == k for c in moved)


def test_the_vector_is_added_where_asked(tiny_llama):
    """``positions="prompt"`` adds it at every prompt token: different from the last token alone, and alpha 0 is
    still the unsteered model."""
    tok = tiny_llama.tokenizer
    lens = LogitLens(tiny_llama.model)
    tokens = resolve_class_tokens(tok)
    v = np.random.default_rng(0).standard_normal(tiny_llama.hidden_size)
    pairs = valid_pairs(HELD, "multiply")
    last = steer(lens, tok, pairs, v, LAYER, LENS_LAYER, [0.0, 3.0], tokens, 0)
    every = steer(lens, tok, pairs, v, LAYER, LENS_LAYER, [0.0, 3.0], tokens, 0, positions="prompt")
    assert last[0].p_to == every[0].p_to  # alpha 0: nothing added anywhere
    assert np.abs(np.log(last[1].p_to) - np.log(every[1].p_to)).max() > 0.1
    with pytest.raises(ValueError, match="unknown positions"):
        steer(lens, tok, pairs, v, LAYER, LENS_LAYER, [1.0], tokens, 0, positions="answer")


def test_valid_pairs_keep_only_operands_valid_for_both():
    held = [make_sample(30, "add", 6), make_sample(5, "add", 9), make_sample(50, "add", 50), make_sample(49, "add", 7)]
    assert [(b.a, b.b) for b, _ in valid_pairs(held, "subtract")] == [(30, 6), (49, 7)]  # a > b
    divide = valid_pairs(held, "divide")  # b | a, b <= 12 and a / b <= 12
    assert [(b.a, b.b) for b, _ in divide] == [(30, 6), (49, 7)]
    assert all(a.label == "divide" and a.answer == str(b.a // b.b) and a.prompt == f"{b.a} / {b.b} = "
               for b, a in divide)
    assert len(valid_pairs(held, "multiply")) == 4
