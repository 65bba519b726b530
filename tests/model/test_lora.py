"""LoRA on V/O only (lora.py): parameter counts from the architecture, the adapter math, array round trips."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import lazarus_nb
from lazarus_nb.errors import LazarusError
from lazarus_nb.model import lora
from lazarus_nb.model.hooks import forward_hidden

# (layers, hidden, kv_width = n_kv_heads * head_dim, q_width = n_heads * head_dim) of the conftest tiny models
TINY_SHAPES = {
    "llama": (4, 64, 2 * 16, 4 * 16),
    "qwen2": (4, 64, 2 * (64 // 4), 4 * (64 // 4)),
    "gemma3_text": (4, 64, 1 * 16, 4 * 16),
}


@pytest.fixture
def model_of(tiny_model_dir):
    """Factory: a freshly read tiny model (weights only: these tests need no tokenizer)."""
    from mlx_lm.utils import load_model

    def make(arch: str = "llama"):
        model, _ = load_model(tiny_model_dir(arch))
        model.eval()
        return model

    return make


def test_expected_count_reference_numbers():
    # docs/science.md "LoRA adapters": rank 16 on V/O of all 22 TinyLlama layers (hidden 2048, 4 kv heads of 64 -> 256)
    assert lora.expected_count(22, 16, 2048, 256, 2048) == 2_252_800
    assert lora.expected_count(22, 16, 2048, 256, 2048) != 1_048_576  # the original tool's wrong count
    # embedded SmolLM2-135M: 30 layers, hidden 576, 3 kv heads of 64, 9 heads of 64
    assert lora.expected_count(30, 16, 576, 192, 576) == 30 * 16 * ((576 + 192) + (576 + 576)) == 921_600
    assert lora.expected_count(10, 2, 8, 4, 8, targets=("v",)) == 10 * 2 * (8 + 4)
    assert lora.expected_count(10, 2, 8, 4, 8, targets=("o",)) == 10 * 2 * (8 + 8)


@pytest.mark.parametrize("arch", sorted(TINY_SHAPES))
def test_trainable_count_equals_adapter_sizes(tiny_model_dir, arch):
    rank = 3
    loaded = lazarus_nb.load_model(str(tiny_model_dir(arch)))
    layers, hidden, kv, q = TINY_SHAPES[arch]
    assert (loaded.num_layers, loaded.hidden_size, loaded.kv_width, loaded.num_heads * loaded.head_dim) == (
        layers, hidden, kv, q)
    by_hand = layers * rank * ((hidden + kv) + (q + hidden))
    adapted = lora.apply_lora(loaded.model, lora.LoraConfig(rank=rank))
    assert adapted == list(range(layers))
    assert lora.trainable_count(loaded.model) == by_hand == lora.expected_count(layers, rank, hidden, kv, q)
    found = lora.adapters(loaded.model)
    assert sorted(found) == [(i, t) for i in range(layers) for t in ("o", "v")]
    assert sum(m.lora_a.size + m.lora_b.size for m in found.values()) == by_hand
    for (_, t), m in found.items():
        out_width = kv if t == "v" else hidden
        in_width = hidden if t == "v" else q
        assert m.lora_a.shape == (in_width, rank) and m.lora_b.shape == (rank, out_width)
    # nothing but the adapter matrices is trainable
    names = [k for k, _ in tree_flatten(loaded.model.trainable_parameters())]
    assert names and all(k.endswith((".lora_a", ".lora_b")) for k in names)
    assert all(".self_attn.v_proj." in k or ".self_attn.o_proj." in k for k in names)


def test_embedded_architecture_rank16_count(embedded_dir):
    """The embedded model's architecture, built from its config.json (lazy: no weights are read)."""
    import json

    from mlx_lm.utils import _get_classes

    config = json.loads((embedded_dir / "config.json").read_text())
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_key_value_heads"] * head_dim) == (
        30, 576, 192)
    lora.apply_lora(model, lora.LoraConfig(rank=16))
    assert lora.trainable_count(model) == 921_600 == lora.expected_count(30, 16, 576, 192, 576)


def test_restricted_layers_and_targets(model_of):
    model = model_of("llama")
    assert lora.apply_lora(model, lora.LoraConfig(rank=2, layers=[3, 1, 3], targets=("v",))) == [1, 3]
    assert sorted(lora.adapters(model)) == [(1, "v"), (3, "v")]
    assert lora.trainable_count(model) == lora.expected_count(2, 2, 64, 32, 64, targets=("v",)) == 2 * 2 * 96


def test_bad_layers_and_double_application_raise(model_of):
    model = model_of("llama")
    with pytest.raises(LazarusError, match="LoRA layers: layer 4 is outside this model's layers 0..3"):
        lora.apply_lora(model, lora.LoraConfig(layers=[4]))
    assert lora.adapters(model) == {}  # validated before anything was wrapped
    lora.apply_lora(model, lora.LoraConfig(rank=2))
    with pytest.raises(ValueError, match="already"):
        lora.apply_lora(model, lora.LoraConfig(rank=2))


def test_fresh_adapters_leave_the_model_unchanged(model_of):
    model = model_of("qwen2")
    tokens = mx.array([[39, 1672, 216, 40, 446, 216]])
    before = np.array(model(tokens))
    lora.apply_lora(model, lora.LoraConfig(rank=4))
    assert all(float(mx.abs(m.lora_b).max()) == 0.0 for m in lora.adapters(model).values())
    assert np.array_equal(np.array(model(tokens)), before)


def test_adapter_math_matches_numpy(model_of):
    """An adapted projection computes x W^T + scale * (x A) B, with A (in, r) and B (r, out)."""
    model = model_of("llama")
    scale = 3.0
    lora.apply_lora(model, lora.LoraConfig(rank=4, scale=scale))
    m = lora.adapters(model)[(1, "v")]
    m.lora_b = mx.random.normal(m.lora_b.shape, key=mx.random.key(7))
    x = mx.random.normal((3, 64), key=mx.random.key(8))
    xn = np.array(x, dtype=np.float64)
    w = np.array(m.linear.weight, dtype=np.float64)  # (out, in)
    a, b = np.array(m.lora_a, dtype=np.float64), np.array(m.lora_b, dtype=np.float64)
    expected = xn @ w.T + scale * (xn @ a) @ b
    assert np.allclose(np.array(m(x)), expected, atol=1e-5)


def test_lora_arrays_round_trip(model_of):
    src = model_of()
    lora.apply_lora(src, lora.LoraConfig(rank=3))
    for m in lora.adapters(src).values():
        m.lora_b = mx.random.normal(m.lora_b.shape, key=mx.random.key(3))
    arrays = lora.lora_arrays(src)
    assert set(arrays) == {f"layer_{i}_{t}_{ab}" for i in range(4) for t in "vo" for ab in "AB"}
    assert arrays["layer_0_v_A"].shape == (64, 3) and arrays["layer_0_v_B"].shape == (3, 32)
    assert arrays["layer_0_o_A"].shape == (64, 3) and arrays["layer_0_o_B"].shape == (3, 64)

    dst = model_of()
    mx.random.seed(99)  # a different A initialisation, which set_lora_arrays must overwrite
    lora.apply_lora(dst, lora.LoraConfig(rank=3))
    lora.set_lora_arrays(dst, {k: mx.array(np.array(v)) for k, v in arrays.items()})
    tokens = mx.array([[39, 1672, 216, 40, 446, 216]])
    assert np.array_equal(np.array(dst(tokens)), np.array(src(tokens)))
    hidden_src, _ = forward_hidden(src, tokens)
    hidden_dst, _ = forward_hidden(dst, tokens)
    assert all(np.array_equal(np.array(a), np.array(b)) for a, b in zip(hidden_src, hidden_dst))

    missing = dict(arrays)
    del missing["layer_2_o_B"]
    with pytest.raises(ValueError, match="missing"):
        lora.set_lora_arrays(dst, missing)
    wrong = dict(arrays)
    wrong["layer_2_o_B"] = mx.zeros((3, 32))
    with pytest.raises(ValueError, match="shapes"):
        lora.set_lora_arrays(dst, wrong)
