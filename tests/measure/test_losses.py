"""The dual-reward loss (losses.py) against independent computations.

* classification loss: final RMSNorm + unembedding + log-softmax done by hand in numpy from the block output;
* answer loss: mlx-lm's own fine-tuning loss ``mlx_lm.tuner.trainer.default_loss`` restricted to the answer;
* the gathered-positions implementation against a plain full-logits (B, T, V) computation.

The models carry LoRA adapters with random, non-zero B, so the adapted path is what is checked.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.tuner.trainer import default_loss

import lazarus_nb
from lazarus_nb.data.prompts import CANONICAL, make_sample
from lazarus_nb.data.tokens import encode_example, make_batch, resolve_class_tokens
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.model import lora
from lazarus_nb.model.hooks import forward_hidden
from lazarus_nb.model.lens import LogitLens

SAMPLES = [*CANONICAL, make_sample(3, "add", 4), make_sample(50, "multiply", 50)]  # answers of 1 to 4 tokens


def load_adapted(directory):
    loaded = lazarus_nb.load_model(str(directory))
    mx.random.seed(1)
    lora.apply_lora(loaded.model, lora.LoraConfig(rank=4, scale=2.0))
    for m in lora.adapters(loaded.model).values():
        m.lora_b = 0.05 * mx.random.normal(m.lora_b.shape)
    return loaded


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def adapted(request, tiny_model_dir):
    directory = tiny_model_dir(request.param)
    loaded = load_adapted(directory)
    eps = json.loads((directory / "config.json").read_text())["rms_norm_eps"]
    return loaded, eps


@pytest.fixture(scope="module")
def batch(adapted):
    loaded, _ = adapted
    return make_batch(loaded.tokenizer, SAMPLES, resolve_class_tokens(loaded.tokenizer))


def np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_unembedding(loaded) -> np.ndarray:
    """(V, D) unembedding matrix: the embedding when tied, else lm_head."""
    if loaded.tied_embeddings:
        return np.array(loaded.model.model.embed_tokens.weight, dtype=np.float64)
    return np.array(loaded.model.lm_head.weight, dtype=np.float64)


def np_lens_logits(loaded, eps: float, h: np.ndarray) -> np.ndarray:
    """unembed(RMSNorm(h)) with the model's final-norm weight, in float64 numpy."""
    h = h.astype(np.float64)
    w = np.array(loaded.model.model.norm.weight, dtype=np.float64)
    normed = h / np.sqrt((h**2).mean(axis=-1, keepdims=True) + eps) * w
    return normed @ np_unembedding(loaded).T


@pytest.mark.parametrize("layer", [1, 2])
def test_classification_loss_is_hand_computed_lens_cross_entropy(adapted, batch, layer):
    loaded, eps = adapted
    hidden, _ = forward_hidden(loaded.model, batch.tokens)
    rows = np.arange(batch.size)
    h = np.array(hidden[layer])[rows, np.array(batch.prompt_last)]  # (B, D) block-`layer` output
    logp = np_log_softmax(np_lens_logits(loaded, eps, h))
    expected = -logp[rows, np.array(batch.class_ids)].mean()
    _, cls, _ = dual_loss(LogitLens(loaded.model), batch, layer, 0.4)
    assert cls.item() == pytest.approx(expected, abs=1e-4, rel=1e-5)


def test_classification_reads_the_requested_layer(adapted, batch):
    loaded, _ = adapted
    lens = LogitLens(loaded.model)
    values = [dual_loss(lens, batch, layer, 0.4)[1].item() for layer in range(loaded.num_layers)]
    assert len(set(values)) == loaded.num_layers


def test_answer_loss_equals_mlx_lm_default_loss(adapted, batch):
    loaded, _ = adapted
    tok = loaded.tokenizer
    prompts = [encode_example(tok, s.prompt, s.answer)[0] for s in SAMPLES]
    answers = [encode_example(tok, s.prompt, s.answer)[1] for s in SAMPLES]  # digits + EOS terminator
    seqs = [p + a for p, a in zip(prompts, answers)]
    width = max(map(len, seqs)) + 1
    full = mx.array([s + [0] * (width - len(s)) for s in seqs], dtype=mx.int32)
    # default_loss scores target step t (1-based: target token index t) when offset <= t <= end. Answer
    # tokens sit at token indices len(p) .. len(p)+len(a)-1, so end = len(p)+len(a)-1 ("length" in mlx-lm's
    # own batches is len(seq), which also scores the token after the sequence; we want only the answer).
    lengths = mx.array([[len(p), len(p) + len(a) - 1] for p, a in zip(prompts, answers)])
    expected, ntoks = default_loss(loaded.model, full, lengths)
    assert ntoks.item() == sum(map(len, answers))  # the mask selects exactly the answer tokens
    _, _, ans = dual_loss(LogitLens(loaded.model), batch, 2, 0.4)
    assert ans.item() == pytest.approx(expected.item(), abs=1e-4, rel=1e-5)


@pytest.mark.parametrize("w", [0.0, 0.4, 1.0])
def test_total_is_weighted_sum(adapted, batch, w):
    loaded, _ = adapted
    total, cls, ans = dual_loss(LogitLens(loaded.model), batch, 2, w)
    assert total.item() == pytest.approx(w * cls.item() + (1 - w) * ans.item(), rel=1e-6)
    if w == 1.0:
        assert total.item() == pytest.approx(cls.item(), rel=1e-6)
    if w == 0.0:
        assert total.item() == pytest.approx(ans.item(), rel=1e-6)


def test_gathered_losses_equal_full_logits_computation(adapted, batch):
    loaded, _ = adapted
    layer = 2
    tokens = np.array(batch.tokens)
    logits = np.array(loaded.model(batch.tokens))  # (B, T, V): the model's own forward, every position
    logp = np_log_softmax(logits)
    prompt_len = [len(encode_example(loaded.tokenizer, s.prompt, s.answer)[0]) for s in SAMPLES]
    answer_len = [len(encode_example(loaded.tokenizer, s.prompt, s.answer)[1]) for s in SAMPLES]
    # position t predicts token t+1; score t where t+1 is an answer token
    total_ce, count = 0.0, 0
    for r, (p, a) in enumerate(zip(prompt_len, answer_len)):
        for t in range(logits.shape[1] - 1):
            if p <= t + 1 < p + a:
                total_ce -= logp[r, t, tokens[r, t + 1]]
                count += 1
    expected_ans = total_ce / count

    lens = LogitLens(loaded.model)
    hidden, _ = forward_hidden(loaded.model, batch.tokens)
    lens_logp = np_log_softmax(np.array(lens(hidden[layer])))  # (B, T, V) lens over every position
    rows = np.arange(batch.size)
    expected_cls = -lens_logp[rows, np.array(prompt_len) - 1, np.array(batch.class_ids)].mean()

    total, cls, ans = dual_loss(lens, batch, layer, 0.4)
    assert ans.item() == pytest.approx(expected_ans, abs=1e-5, rel=1e-6)
    assert cls.item() == pytest.approx(expected_cls, abs=1e-5, rel=1e-6)
    assert total.item() == pytest.approx(0.4 * expected_cls + 0.6 * expected_ans, abs=1e-5, rel=1e-6)


def test_padding_does_not_change_a_row_loss(adapted):
    """Right padding is invisible: a padded batch's losses are the row means of the rows computed alone."""
    loaded, _ = adapted
    ct = resolve_class_tokens(loaded.tokenizer)
    lens = LogitLens(loaded.model)
    short, long = make_sample(3, "add", 4), make_sample(50, "multiply", 50)  # answers of 1 and 4 tokens
    n_short, n_long = (len(encode_example(loaded.tokenizer, s.prompt, s.answer)[1]) for s in (short, long))
    assert n_short < n_long
    _, cls_s, ans_s = dual_loss(lens, make_batch(loaded.tokenizer, [short], ct), 2, 0.4)
    _, cls_l, ans_l = dual_loss(lens, make_batch(loaded.tokenizer, [long], ct), 2, 0.4)
    _, cls_b, ans_b = dual_loss(lens, make_batch(loaded.tokenizer, [short, long], ct), 2, 0.4)
    assert cls_b.item() == pytest.approx((cls_s.item() + cls_l.item()) / 2, abs=1e-5)
    token_mean = (ans_s.item() * n_short + ans_l.item() * n_long) / (n_short + n_long)
    assert ans_b.item() == pytest.approx(token_mean, abs=1e-5)
