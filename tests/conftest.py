"""Shared fixtures: the embedded model, and tiny random-weight model directories of several architectures
saved in mlx-lm's format with the embedded model's real tokenizer (no network, loads in well under 1 s)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Smallest configs that still exercise each architecture's quirks: grouped-query attention (kv heads <
# heads), untied (qwen2) and tied embeddings, gemma3's sliding window, 1+w norms and embedding scale.
TINY_CONFIGS = {
    "llama": {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": True, "head_dim": 16,
    },
    "qwen2": {
        "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": False,
    },
    "gemma3_text": {
        "model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "sliding_window": 4, "sliding_window_pattern": 2, "query_pre_attn_scalar": 16,
    },
}


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """The converted embedded model directory (fetched by `make setup`; converted here if missing)."""
    from lazarus_nb.model.load import fetch_embedded

    return fetch_embedded()


def make_tiny_model(directory: Path, arch: str, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Write a random-weight mlx-lm model directory of ``arch`` with the tokenizer from ``tokenizer_dir``."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes

    tok_config = json.loads((tokenizer_dir / "config.json").read_text())
    config = {**TINY_CONFIGS[arch], "vocab_size": tok_config["vocab_size"]}
    model_class, args_class = _get_classes(config)
    mx.random.seed(seed)
    model = model_class(args_class.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    # Random init leaves some norms at exactly 1/0; perturb every weight so tests see no accidental symmetry.
    weights = {k: v + 0.02 * mx.random.normal(v.shape) for k, v in weights.items()}
    directory.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(directory / "model.safetensors"), weights, metadata={"format": "mlx"})
    (directory / "config.json").write_text(json.dumps(config))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, directory / name)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir):
    """Factory: ``tiny_model_dir("llama")`` -> a model directory (cached per architecture per session)."""
    made: dict[str, Path] = {}

    def make(arch: str = "llama") -> Path:
        if arch not in made:
            made[arch] = make_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch, embedded_dir)
        return made[arch]

    return make


@pytest.fixture(scope="session")
def tiny_by_arch(tiny_model_dir):
    """arch -> loaded tiny model without its tokenizer (for tests that feed token ids; the tokenizer's load is slow)."""
    import mlx_lm.utils

    loaded = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mlx_lm.utils, "load_tokenizer", lambda *a, **k: None)
        for arch in sorted(TINY_CONFIGS):
            loaded[arch] = lazarus_nb.load_model(str(tiny_model_dir(arch)))
    return loaded


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_dir):
    """The tiny llama, loaded once (read-only: tests that train take ``fresh`` copies)."""
    return lazarus_nb.load_model(str(tiny_model_dir("llama")))


@pytest.fixture
def fresh(tiny_llama):
    """Factory: the tiny llama with freshly read weights (training mutates the model); the tokenizer is shared."""
    from dataclasses import replace

    from mlx_lm.utils import load_model

    def make():
        model, _ = load_model(tiny_llama.path)
        model.eval()
        return replace(tiny_llama, model=model)

    return make


@pytest.fixture(scope="session")
def tiny_path(tiny_model_dir) -> Path:
    """The tiny llama's model directory (what ``-m`` takes on the command line)."""
    return tiny_model_dir("llama")
