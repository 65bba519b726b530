"""Tests of the GGUF -> mlx-lm conversion (lazarus_nb.convert) and of the converted embedded model's quality.

Unit tests use small synthetic arrays; the ``slow`` tests load the converted embedded SmolLM2-135M once.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from lazarus_nb import load_model
from lazarus_nb.model.convert import _dequantize, _unpermute, convert_weights, model_config

# A fixed plain-English paragraph; the correctly converted model scores ~9 perplexity on it, a conversion
# with the llama.cpp Q/K row order left in place scores ~48, broken weights far more.
PARAGRAPH = (
    "Water is a clear liquid that has no color, taste, or smell. It covers most of the surface of the Earth, "
    "and all living things need it to survive. People drink water every day, and they also use it for "
    "cooking, cleaning, and growing food."
)


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf ``permute`` of Q/K rows, written independently of the module."""
    out, inp = w.shape
    return w.reshape(n_head, 2, out // n_head // 2, inp).swapaxes(1, 2).reshape(out, inp)


# ---------------------------------------------------------------------------------------------- unit tests


@pytest.mark.parametrize("n_head", [9, 3])  # SmolLM2-135M: 9 query heads, 3 key/value heads
def test_unpermute_inverts_llama_cpp_permute(n_head):
    head_dim, inp = 8, 5
    hf = np.arange(n_head * head_dim * inp, dtype=np.float32).reshape(n_head * head_dim, inp)
    gguf = llama_cpp_permute(hf, n_head)
    assert not np.array_equal(gguf, hf)  # the permutation is not the identity, so the test can fail
    back = np.array(_unpermute(mx.array(gguf), n_head))
    np.testing.assert_array_equal(back, hf)


@pytest.mark.parametrize("n_head", [9, 3])
def test_unpermute_row_semantics(n_head):
    """llama.cpp interleaves each head's two rotary halves: GGUF row 2j is HF row j, row 2j+1 is HF row j+d/2."""
    head_dim = 8
    gguf_rows = np.arange(n_head * head_dim, dtype=np.float32)[:, None]  # row r holds the value r
    hf = np.array(_unpermute(mx.array(gguf_rows), n_head))[:, 0]
    for h in range(n_head):
        for j in range(head_dim // 2):
            assert hf[h * head_dim + j] == h * head_dim + 2 * j
            assert hf[h * head_dim + head_dim // 2 + j] == h * head_dim + 2 * j + 1


def test_unpermute_with_wrong_head_count_does_not_invert():
    hf = np.arange(9 * 8 * 3, dtype=np.float32).reshape(72, 3)
    wrong = np.array(_unpermute(mx.array(llama_cpp_permute(hf, 9)), 3))
    assert not np.array_equal(wrong, hf)


def _fake_meta(**overrides):
    meta = {
        "general.architecture": "llama",
        "llama.attention.head_count": mx.array(4),
        "llama.attention.head_count_kv": mx.array(2),
        "llama.embedding_length": mx.array(32),
        "llama.feed_forward_length": mx.array(48),
        "llama.block_count": mx.array(2),
        "llama.attention.layer_norm_rms_epsilon": mx.array(1e-5),
        "llama.rope.freq_base": mx.array(10000.0),
        "llama.context_length": mx.array(256),
        "tokenizer.ggml.tokens": ["a", "b", "c", "d", "e"],
        "tokenizer.ggml.bos_token_id": mx.array(1),
        "tokenizer.ggml.eos_token_id": mx.array(2),
    }
    meta.update(overrides)
    return meta


def test_model_config_from_metadata():
    cfg = model_config(_fake_meta())
    assert cfg["model_type"] == "llama"
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]) == (32, 48, 2)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (4, 2, 8)
    assert cfg["vocab_size"] == 5
    assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (1, 2)
    assert cfg["rope_theta"] == 10000.0 and cfg["max_position_embeddings"] == 256
    assert math.isclose(cfg["rms_norm_eps"], 1e-5, rel_tol=1e-6)
    for key in ("hidden_size", "num_attention_heads", "vocab_size", "bos_token_id"):
        assert type(cfg[key]) is int  # JSON-serializable Python ints, not mx arrays


def test_model_config_rejects_other_architectures():
    with pytest.raises(ValueError, match="qwen2"):
        model_config(_fake_meta(**{"general.architecture": "qwen2"}))


def _fake_gguf_weights(n_heads=4, n_kv=2, head_dim=8, hidden=32, with_output=False):
    rng = np.random.default_rng(0)

    def w(*shape):
        return mx.array(rng.standard_normal(shape).astype(np.float32))

    weights = {
        "token_embd.weight": w(5, hidden),
        "output_norm.weight": w(hidden),
        "blk.0.attn_q.weight": w(n_heads * head_dim, hidden),
        "blk.0.attn_k.weight": w(n_kv * head_dim, hidden),
        "blk.0.attn_v.weight": w(n_kv * head_dim, hidden),
        "blk.0.attn_output.weight": w(hidden, n_heads * head_dim),
        "blk.0.ffn_gate.weight": w(48, hidden),
        "blk.0.ffn_up.weight": w(48, hidden),
        "blk.0.ffn_down.weight": w(hidden, 48),
        "blk.0.attn_norm.weight": w(hidden),
        "blk.0.ffn_norm.weight": w(hidden),
    }
    if with_output:
        weights["output.weight"] = w(5, hidden)
    return weights


def test_convert_weights_names_unpermutes_and_ties():
    gguf = _fake_gguf_weights()
    config = {"num_attention_heads": 4, "num_key_value_heads": 2}
    out = convert_weights(dict(gguf), config)
    expected_names = {
        "model.embed_tokens.weight", "model.norm.weight",
        *(f"model.layers.0.{m}.weight" for m in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
            "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm")),
    }
    assert set(out) == expected_names
    assert config["tie_word_embeddings"] is True
    # Q and K come back in HF order: re-applying llama.cpp's permutation gives the GGUF tensor again
    q = np.array(out["model.layers.0.self_attn.q_proj.weight"])
    k = np.array(out["model.layers.0.self_attn.k_proj.weight"])
    np.testing.assert_array_equal(llama_cpp_permute(q, 4), np.array(gguf["blk.0.attn_q.weight"]))
    np.testing.assert_array_equal(llama_cpp_permute(k, 2), np.array(gguf["blk.0.attn_k.weight"]))
    # everything else is copied unchanged
    pairs = {"blk.0.attn_v": "model.layers.0.self_attn.v_proj", "blk.0.ffn_down": "model.layers.0.mlp.down_proj",
             "token_embd": "model.embed_tokens", "output_norm": "model.norm"}
    for src, dst in pairs.items():
        np.testing.assert_array_equal(np.array(out[dst + ".weight"]), np.array(gguf[src + ".weight"]))
    assert all(v.dtype == mx.float32 for v in out.values())


def test_convert_weights_keeps_separate_output_head():
    config = {"num_attention_heads": 4, "num_key_value_heads": 2}
    out = convert_weights(_fake_gguf_weights(with_output=True), config)
    assert "lm_head.weight" in out
    assert config["tie_word_embeddings"] is False


@pytest.mark.parametrize("bits", [4, 8])
def test_dequantize_affine_blocks_of_32(bits):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 64)).astype(np.float32)
    q, scales, biases = mx.quantize(mx.array(w), group_size=32, bits=bits)
    got = np.array(_dequantize({"t.weight": q, "t.scales": scales, "t.biases": biases}, "t"))
    assert got.shape == w.shape and got.dtype == np.float32
    # affine quantization error stays within one step of each 32-block's range (wrong bits/group: far off)
    step = (w.reshape(16, 2, 32).max(-1) - w.reshape(16, 2, 32).min(-1)) / (2**bits - 1)
    err = np.abs(got - w).reshape(16, 2, 32).max(-1)
    assert np.all(err <= step)


def test_dequantize_plain_tensor_becomes_float32():
    w = mx.array(np.arange(6, dtype=np.float16).reshape(2, 3))
    got = _dequantize({"t.weight": w}, "t")
    assert got.dtype == mx.float32
    np.testing.assert_array_equal(np.array(got), np.arange(6, dtype=np.float32).reshape(2, 3))


# ------------------------------------------------------------------------- the converted embedded model


@pytest.fixture(scope="module")
def embedded(embedded_dir):
    return load_model(str(embedded_dir))


def _ids(tok, text):
    return tok.encode(text, add_special_tokens=False)


@pytest.mark.slow
@pytest.mark.parametrize("text", [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "12345 and 3.14159 in 2024",
    "naïve café, Grüße, 日本語のテキスト, emoji 😀🚀",
    "   three leading spaces",
    " one leading space",
    "line one\nline two\n\n\tindented\r\n",
])
def test_tokenizer_round_trips(embedded, text):
    tok = embedded.tokenizer
    assert tok.decode(_ids(tok, text)) == text


@pytest.mark.slow
def test_tokenizer_splits_digits_individually(embedded):
    tok = embedded.tokenizer
    ids = _ids(tok, "12345")
    assert len(ids) == 5
    assert [tok.decode([i]) for i in ids] == list("12345")
    assert len(set(_ids(tok, "0123456789"))) == 10
    # digits are split after a space too: " 2024" is a space token and four digit tokens
    pieces = [tok.decode([i]) for i in _ids(tok, "year 2024")]
    assert pieces[-4:] == list("2024")


@pytest.mark.slow
def test_tokenizer_words_and_whitespace(embedded):
    tok = embedded.tokenizer
    # GPT-2 byte-level BPE: a leading space belongs to the following word
    assert [tok.decode([i]) for i in _ids(tok, " leading spaces")] == [" leading", " spaces"]
    assert [tok.decode([i]) for i in _ids(tok, "Hello world")] == ["Hello", " world"]
    assert tok.decode(_ids(tok, "\n")) == "\n" and len(_ids(tok, "\n")) == 1
    assert _ids(tok, "a\nb") != _ids(tok, "a b")


@pytest.mark.slow
def test_tokenizer_special_tokens(embedded):
    tok = embedded.tokenizer
    # SmolLM2: <|im_start|> = 1 (bos), <|im_end|> = 2 (eos), each one token
    assert _ids(tok, "<|im_start|>") == [1]
    assert _ids(tok, "<|im_end|>") == [2]
    assert 2 in tok.eos_token_ids


def _perplexity(model, tokenizer, text: str) -> float:
    ids = mx.array(_ids(tokenizer, text))[None]
    logits = model(ids).astype(mx.float32)[0, :-1]
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    nll = -mx.take_along_axis(logp, ids[0, 1:, None], axis=-1).mean()
    return math.exp(nll.item())


@pytest.mark.slow
def test_perplexity_on_plain_english_is_low(embedded):
    ppl = _perplexity(embedded.model, embedded.tokenizer, PARAGRAPH)
    print(f"embedded smollm2-135m perplexity: {ppl:.2f}")
    assert 1.0 < ppl < 20.0


@pytest.mark.slow
def test_greedy_continuation_knows_paris(embedded):
    tok = embedded.tokenizer
    ids = _ids(tok, "The capital of France is")
    out: list[int] = []
    for _ in range(3):  # " Paris" is the first greedy token; 3 leave room for a leading space or article
        logits = embedded.model(mx.array(ids + out)[None])
        out.append(int(mx.argmax(logits[0, -1]).item()))
    assert "Paris" in tok.decode(out)
