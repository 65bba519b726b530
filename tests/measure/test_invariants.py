"""Invariants of the dual-reward objective that must hold exactly.

* the classification loss reads layer L only, so its gradient is exactly zero for adapters in blocks above L;
* the answer loss does not read the class targets, so changing them leaves it (and its gradient) unchanged;
* the printed adapter size ``expected_count`` is right when the attention width (heads x head_dim) differs
  from the hidden size, which none of the default tiny models exercise.

The tiny models carry LoRA adapters with random, non-zero B, so every adapter influences the output and a
zero gradient is a property of the loss, not of the initialisation.
"""

from __future__ import annotations

from dataclasses import replace

import mlx.core as mx
import mlx.nn as nn
import mlx_lm.utils
import numpy as np
import pytest
from conftest import TINY_CONFIGS, make_tiny_model
from mlx.utils import tree_flatten

import lazarus_nb
from lazarus_nb.data.prompts import CANONICAL, make_sample
from lazarus_nb.data.tokens import make_batch, resolve_class_tokens
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.model import lora
from lazarus_nb.model.lens import LogitLens

SAMPLES = [*CANONICAL, make_sample(3, "add", 4), make_sample(50, "multiply", 50)]


@pytest.fixture(scope="module")
def adapted(tiny_model_dir):
    loaded = lazarus_nb.load_model(str(tiny_model_dir("llama")))
    mx.random.seed(2)
    lora.apply_lora(loaded.model, lora.LoraConfig(rank=4))
    for m in lora.adapters(loaded.model).values():
        m.lora_b = 0.05 * mx.random.normal(m.lora_b.shape)
    return loaded


@pytest.fixture(scope="module")
def batch(adapted):
    return make_batch(adapted.tokenizer, SAMPLES, resolve_class_tokens(adapted.tokenizer))


def adapter_grads(loaded, batch, layer: int, cls_weight: float) -> dict[str, np.ndarray]:
    lens = LogitLens(loaded.model)
    loss_and_grad = nn.value_and_grad(loaded.model, lambda b: dual_loss(lens, b, layer, cls_weight)[0])
    _, grads = loss_and_grad(batch)
    return {k: np.array(v) for k, v in tree_flatten(grads)}


def block_of(key: str) -> int:
    return int(key.split("layers.")[1].split(".")[0])


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_classification_gradient_is_exactly_zero_above_the_classifier_layer(adapted, batch, layer):
    grads = adapter_grads(adapted, batch, layer, cls_weight=1.0)
    assert len(grads) == 4 * 2 * 2  # 4 blocks x (v, o) x (A, B)
    for key, g in grads.items():
        if block_of(key) > layer:
            assert not g.any(), key  # exactly zero, not merely small
        else:
            assert np.abs(g).max() > 1e-7, key  # blocks up to L do receive a gradient
    # control: the answer loss reaches the top blocks, so the zeros above are the classification loss's own
    answer = adapter_grads(adapted, batch, layer, cls_weight=0.0)
    assert all(np.abs(g).max() > 1e-7 for k, g in answer.items() if block_of(k) > layer)


def test_class_targets_do_not_change_the_answer_loss(adapted, batch):
    lens = LogitLens(adapted.model)
    other = replace(batch, class_ids=mx.array(np.roll(np.array(batch.class_ids), 3) + 7))
    assert not np.array_equal(np.array(other.class_ids), np.array(batch.class_ids))
    _, cls_a, ans_a = dual_loss(lens, batch, 2, 0.4)
    _, cls_b, ans_b = dual_loss(lens, other, 2, 0.4)
    assert ans_a.item() == ans_b.item()
    assert cls_a.item() != cls_b.item()  # the targets were really read by the classification loss
    grads_a, grads_b = adapter_grads(adapted, batch, 2, 0.0), adapter_grads(adapted, other, 2, 0.0)
    assert all(np.array_equal(grads_a[k], grads_b[k]) for k in grads_a)


# attention width 4 heads x 32 = 128 != hidden 64; V width 1 kv head x 32 = 32
WIDE_ATTENTION = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": True,
}


def test_expected_count_when_attention_width_differs_from_hidden(tmp_path, embedded_dir, monkeypatch):
    monkeypatch.setitem(TINY_CONFIGS, "llama_wide_attention", WIDE_ATTENTION)
    directory = make_tiny_model(tmp_path / "wide", "llama_wide_attention", embedded_dir)
    monkeypatch.setattr(mlx_lm.utils, "load_tokenizer", lambda *a, **k: None)
    loaded = lazarus_nb.load_model(str(directory))
    q_width = loaded.num_heads * loaded.head_dim
    assert (loaded.hidden_size, q_width, loaded.kv_width) == (64, 128, 32)
    rank = 3
    lora.apply_lora(loaded.model, lora.LoraConfig(rank=rank))
    by_hand = 3 * rank * ((64 + 32) + (128 + 64))  # V: A (64, r) + B (r, 32); O: A (128, r) + B (r, 64)
    assert lora.trainable_count(loaded.model) == by_hand
    assert lora.expected_count(3, rank, loaded.hidden_size, loaded.kv_width, q_width) == by_hand
    assert lora.expected_count(3, rank, 64, 32, 64) != by_hand  # taking O's input as hidden_size is wrong here
    o = lora.adapters(loaded.model)[(0, "o")]
    assert o.lora_a.shape == (128, rank) and o.lora_b.shape == (rank, 64)
