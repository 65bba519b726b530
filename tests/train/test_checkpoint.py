"""Checkpoints (train/checkpoint.py): the layout of docs/science.md "Checkpoint", reload from disk, mlx-lm
compatibility, and safety."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import lazarus_nb
from lazarus_nb import LazarusError
from lazarus_nb.model import lora
from lazarus_nb.train import checkpoint
from lazarus_nb.train.loop import TrainConfig, prepare, train
from lazarus_nb.train.record import RunRecord

TINY = TrainConfig(steps=2, num_samples=16, heldout_samples=8, snapshot_size=4, lora_rank=4, batch_size=4,
                   snapshot_every=0, learning_rate=1e-2, seed=0)
PROMPT_TOKENS = mx.array([[39, 1672, 216, 40, 446, 216, 37, 38], [2, 3, 17, 99, 1000, 4000, 216, 40]])


@pytest.fixture(scope="module")
def template(tiny_model_dir):
    return lazarus_nb.load_model(str(tiny_model_dir("llama")))


@pytest.fixture(scope="module")
def fresh(template):
    """Factory: the tiny llama with freshly read weights, sharing the (slow to load, immutable) tokenizer."""
    from mlx_lm.utils import load_model

    def make(path=None):
        model, _ = load_model(path or template.path)
        model.eval()
        return replace(template, model=model, path=path or template.path)

    return make


def logits(loaded) -> np.ndarray:
    return np.array(loaded.model(PROMPT_TOKENS))


class Trained:
    def __init__(self, loaded, state, path):
        self.loaded, self.state, self.path = loaded, state, path
        self.logits = logits(loaded)
        self.arrays = {k: np.array(v) for k, v in lora.lora_arrays(loaded.model).items()}


def train_and_save(fresh, path, config):
    loaded = fresh()
    state = train(loaded, prepare(loaded, config))
    checkpoint.save(path, loaded, state)
    return Trained(loaded, state, path)


@pytest.fixture(scope="module")
def trained(fresh, tmp_path_factory):
    """A 2-step run of the tiny llama saved to disk (read-only: tests that damage it work on a copy)."""
    return train_and_save(fresh, tmp_path_factory.mktemp("ckpt") / "run", TINY)


@pytest.fixture(scope="module")
def trained_subset(fresh, tmp_path_factory):
    """Adapters on blocks 1 and 3 only (a gap inside the range mlx-lm adapts)."""
    return train_and_save(fresh, tmp_path_factory.mktemp("ckpt") / "run", replace(TINY, lora_layers=[1, 3]))


@pytest.fixture
def copy(trained, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(trained.path, target)
    return target


def close(a, b) -> bool:
    return np.allclose(a, b, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- layout and round trip


def test_npz_keys_and_shapes_follow_spec(trained):
    r, hidden, kv, q = TINY.lora_rank, 64, 2 * 16, 4 * 16
    with np.load(trained.path / "lora_weights.npz") as npz:
        assert set(npz.files) == {f"layer_{i}_{t}_{ab}" for i in range(4) for t in "vo" for ab in "AB"}
        for i in range(4):
            assert npz[f"layer_{i}_v_A"].shape == (hidden, r)
            assert npz[f"layer_{i}_v_B"].shape == (r, kv)
            assert npz[f"layer_{i}_o_A"].shape == (q, r)
            assert npz[f"layer_{i}_o_B"].shape == (r, hidden)
        for k in npz.files:
            assert npz[k].dtype == np.float32
            assert np.array_equal(npz[k], trained.arrays[k])
        assert any(np.abs(npz[f"layer_{i}_v_B"]).max() > 0 for i in range(4))  # trained, not the zero init


def test_config_json_has_spec_fields_and_rebuild_info(trained):
    cfg = json.loads((trained.path / "config.json").read_text())
    st = trained.state
    expected = {"model": trained.loaded.name, "classifier_layer": 2, "lora_rank": 4, "cls_weight": 0.4, "steps": 2,
                "learning_rate": 1e-2, "seed": 0, "lora_scale": TINY.lora_scale, "lora_layers": [0, 1, 2, 3],
                "class_tokens": st.class_tokens.as_dict(), "steps_completed": 2, "status": "complete",
                "trainable_params": lora.expected_count(4, 4, 64, 32, 64)}
    assert {k: cfg[k] for k in expected} == expected
    assert "final_accuracy" in cfg
    assert {"mlx", "mlx-lm", "numpy"} <= set(cfg["versions"])
    assert cfg["architecture"]["model_type"] == "llama"
    history = json.loads((trained.path / "history.json").read_text())
    assert [s["total"] for s in history["steps"]] == [s.total for s in st.history.steps]


def test_optimizer_state_round_trip(trained):
    saved = dict(tree_flatten(checkpoint.load_optimizer_state(trained.path)))
    live = dict(tree_flatten(trained.state.optimizer.state))
    assert saved.keys() == live.keys()
    assert any(k.endswith(".lora_b.m") for k in saved)
    for k, v in live.items():
        assert np.array_equal(np.array(saved[k]), np.array(v)), k


def test_load_adapter_reproduces_logits(trained, fresh, template):
    loaded = fresh()
    base = logits(loaded)
    record = checkpoint.load_adapter(loaded, trained.path)
    assert record.steps_completed == 2 and record.classifier_layer == 2
    after = logits(loaded)
    assert close(after, trained.logits)
    assert not close(base, trained.logits)  # the adapter matters, so the comparison means something
    assert lora.trainable_count(loaded.model) == trained.state.trainable_params
    with pytest.raises(LazarusError, match="already carries adapters"):
        checkpoint.load_adapter(loaded, trained.path)


@pytest.mark.parametrize("which", ["all-layers", "layers-1-3"])
def test_mlx_lm_load_gives_the_same_logits(trained, trained_subset, which):
    from mlx_lm import load

    run = trained if which == "all-layers" else trained_subset
    adapter_config = json.loads((run.path / "adapter_config.json").read_text())
    assert adapter_config["fine_tune_type"] == "lora"
    assert set(adapter_config["lora_parameters"]["keys"]) == {"self_attn.v_proj", "self_attn.o_proj"}
    assert adapter_config["lora_parameters"]["rank"] == 4
    model, _ = load(str(run.loaded.path), adapter_path=str(run.path))
    assert close(np.array(model(PROMPT_TOKENS)), run.logits)


@pytest.mark.parametrize("keep_config", [True, False], ids=["with-config-json", "pure-mlx-lm"])
def test_mlx_lm_adapter_files_alone_load(copy, trained, fresh, keep_config):
    (copy / "lora_weights.npz").unlink()
    if not keep_config:
        (copy / "config.json").unlink()
    loaded = fresh()
    record = checkpoint.load_adapter(loaded, copy)
    assert (record is None) == (not keep_config)  # a plain mlx-lm adapter directory has no run record
    assert close(logits(loaded), trained.logits)


def test_subset_checkpoint_reloads(trained_subset, fresh):
    loaded = fresh()
    checkpoint.load_adapter(loaded, trained_subset.path)
    assert sorted(lora.adapters(loaded.model)) == [(1, "o"), (1, "v"), (3, "o"), (3, "v")]
    assert close(logits(loaded), trained_subset.logits)


# ---------------------------------------------------------------- safety


def test_check_writable(trained, tmp_path):
    with pytest.raises(LazarusError, match="already holds a checkpoint"):
        checkpoint.check_writable(trained.path)
    assert checkpoint.check_writable(trained.path, force=True) == trained.path
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(LazarusError, match="is a file"):
        checkpoint.check_writable(a_file)
    with pytest.raises(LazarusError, match="is a file"):
        checkpoint.check_writable(a_file, force=True)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(LazarusError, match="already holds files"):
        checkpoint.check_writable(busy)
    (tmp_path / "empty").mkdir()
    assert checkpoint.check_writable(tmp_path / "empty") == tmp_path / "empty"
    assert checkpoint.check_writable(tmp_path / "new" / "run") == tmp_path / "new" / "run"


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


def test_adapter_of_another_architecture_is_refused(trained, tiny_model_dir):
    qwen = lazarus_nb.load_model(str(tiny_model_dir("qwen2")))
    with pytest.raises(LazarusError) as info:
        checkpoint.load_adapter(qwen, trained.path)
    assert "another model" in one_sentence(info) and "llama" in str(info.value)
    assert lora.adapters(qwen.model) == {}


def test_garbage_npz_is_a_lazarus_error(copy, fresh):
    (copy / "lora_weights.npz").write_bytes(b"this is not a zip file at all" * 10)
    loaded = fresh()
    with pytest.raises(LazarusError) as info:
        checkpoint.load_adapter(loaded, copy)
    assert "could not load" in one_sentence(info)
    assert lora.adapters(loaded.model) == {}


def test_truncated_npz_is_a_lazarus_error(copy, fresh):
    data = (copy / "lora_weights.npz").read_bytes()
    (copy / "lora_weights.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LazarusError) as info:
        checkpoint.load_adapter(fresh(), copy)
    one_sentence(info)


def test_a_failure_after_the_adapters_are_applied_leaves_the_model_usable(copy, trained, fresh):
    with np.load(copy / "lora_weights.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    del arrays["layer_2_o_B"]  # every array is fine, one is missing: set_lora_arrays fails after apply_lora
    np.savez(copy / "lora_weights.npz", **arrays)
    loaded = fresh()
    base = logits(loaded)
    with pytest.raises(LazarusError) as info:
        checkpoint.load_adapter(loaded, copy)
    one_sentence(info)
    assert lora.adapters(loaded.model) == {}  # the half-applied adapters were removed again
    assert close(logits(loaded), base)
    checkpoint.load_adapter(loaded, trained.path)  # and a good adapter still loads onto it
    assert close(logits(loaded), trained.logits)


# ---------------------------------------------------------------- adapter content: finite, shaped as promised

NPZ_KEY, MLX_KEY = "layer_1_o_B", "model.layers.1.self_attn.o_proj.lora_b"


def rewrite(path, file, key, change):
    """Replace ``key`` of an adapter file by ``change(its array)`` (numpy in, numpy out)."""
    if file == "lora_weights.npz":
        with np.load(path / file) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays[key] = change(arrays[key].copy())
        np.savez(path / file, **arrays)
    else:
        weights = {k: np.array(v) for k, v in mx.load(str(path / file)).items()}
        weights[key] = change(weights[key].copy())
        mx.save_safetensors(str(path / file), {k: mx.array(v) for k, v in weights.items()})


def poison(value):
    def change(a):
        a[0, 1] = value
        return a

    return change


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("file", ["lora_weights.npz", "adapters.safetensors", "mlx-lm-only"])
def test_a_non_finite_adapter_is_refused_naming_the_file_and_the_key(copy, fresh, file, value):
    if file == "mlx-lm-only":  # a plain mlx-lm adapter directory: no run record, no npz
        (copy / "lora_weights.npz").unlink()
        (copy / "config.json").unlink()
        file = "adapters.safetensors"
    key = NPZ_KEY if file == "lora_weights.npz" else MLX_KEY
    rewrite(copy, file, key, poison(value))
    loaded = fresh()
    for attempt in (lambda: checkpoint.check_adapter(copy, None), lambda: checkpoint.load_adapter(loaded, copy)):
        with pytest.raises(LazarusError) as info:
            attempt()
        assert one_sentence(info) == (f"the adapter '{copy / file}' cannot be used: '{key}' holds 1 non-finite "
                                      "value (NaN or infinity)")
    assert lora.adapters(loaded.model) == {}


def test_a_b_matrix_of_another_width_is_refused_once_the_model_is_known(copy, fresh):
    rewrite(copy, "lora_weights.npz", "layer_2_v_B", lambda a: np.zeros((4, 31), np.float32))  # kv width is 32
    assert checkpoint.check_adapter(copy, None) is not None  # rank 4 as promised: before the load it fits
    loaded = fresh()
    with pytest.raises(LazarusError) as info:
        checkpoint.load_adapter(loaded, copy)
    assert one_sentence(info) == (f"the adapter '{copy / 'lora_weights.npz'}' does not fit: 'layer_2_v_B' has "
                                  "shape (4, 31), but LoRA B of the V projection at rank 4 needs (4, 32)")
    assert lora.adapters(loaded.model) == {}


@pytest.mark.parametrize("file", ["lora_weights.npz", "adapters.safetensors"])
def test_a_matrix_of_another_rank_is_refused_before_the_model_loads(copy, file):
    key = "layer_0_v_A" if file == "lora_weights.npz" else "model.layers.0.self_attn.v_proj.lora_a"
    rewrite(copy, file, key, lambda a: np.zeros((64, 3), np.float32))  # the configs promise rank 4
    with pytest.raises(LazarusError) as info:
        checkpoint.check_adapter(copy, None)
    assert one_sentence(info) == (f"the adapter '{copy / file}' does not fit: '{key}' has shape (64, 3), but "
                                  "LoRA A of the V projection at rank 4 needs (any, 4)")


def test_an_array_that_is_not_a_v_or_o_matrix_is_refused(copy):
    with np.load(copy / "lora_weights.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(copy / "lora_weights.npz", **arrays, layer_0_q_A=np.zeros((64, 4), np.float32))
    with pytest.raises(LazarusError, match="'layer_0_q_A', which is not a LoRA matrix of a V or O projection"):
        checkpoint.check_adapter(copy, None)


@pytest.mark.parametrize("damage", ["nan", "shape"])
def test_resume_refuses_a_non_finite_or_mis_shaped_adapter(copy, fresh, damage):
    from lazarus_nb.run.steps import resume_state

    change = poison(np.nan) if damage == "nan" else (lambda a: np.zeros((4, 63), np.float32))
    rewrite(copy, "lora_weights.npz", NPZ_KEY, change)
    with pytest.raises(LazarusError) as info:
        resume_state(fresh(), copy)
    assert f"'{copy / 'lora_weights.npz'}'" in one_sentence(info) and f"'{NPZ_KEY}'" in str(info.value)


def test_unreadable_config_and_missing_files(copy, fresh, tmp_path):
    with pytest.raises(LazarusError, match="does not exist"):
        checkpoint.load_adapter(fresh(), tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LazarusError, match="not a checkpoint"):
        checkpoint.load_adapter(fresh(), tmp_path / "empty")
    (copy / "lora_weights.npz").unlink()
    (copy / "adapters.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(LazarusError) as info:
        checkpoint.load_adapter(fresh(), copy)
    one_sentence(info)
    (copy / "config.json").write_text("{not json")
    with pytest.raises(LazarusError, match="unreadable"):
        checkpoint.load_adapter(fresh(), copy)


def snapshot_dir(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def leftovers(path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["oserror", "ctrl-c"])
def test_failed_save_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch, error):
    target = tmp_path / "run"
    shutil.copytree(trained.path, target)
    before = snapshot_dir(target)

    def broken_savez(*args, **kwargs):
        raise error

    monkeypatch.setattr(checkpoint.np, "savez", broken_savez)
    with pytest.raises(type(error)):
        checkpoint.save(target, trained.loaded, trained.state, {"final_accuracy": 0.5})
    assert snapshot_dir(target) == before
    assert leftovers(target) == []
    # a first save that fails leaves nothing behind at all
    with pytest.raises(type(error)):
        checkpoint.save(tmp_path / "first", trained.loaded, trained.state)
    assert not (tmp_path / "first").exists() and leftovers(tmp_path / "first") == []


def test_save_overwrites_atomically_and_update_record(trained, tmp_path):
    target = tmp_path / "run"
    checkpoint.save(target, trained.loaded, trained.state)
    checkpoint.save(target, trained.loaded, trained.state, {"final_accuracy": 0.25, "note": "second"})
    cfg = json.loads((target / "config.json").read_text())
    assert cfg["final_accuracy"] == 0.25 and cfg["note"] == "second"
    assert leftovers(target) == []
    record = checkpoint.update_record(target, final_accuracy=0.75)
    cfg2 = json.loads((target / "config.json").read_text())
    assert cfg2 == {**cfg, "final_accuracy": 0.75} and record.final_accuracy == 0.75
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["lora_weights.npz", "config.json", "adapters.safetensors", "adapter_config.json", "history.json",
         "optimizer.safetensors"])


# ---------------------------------------------------------------- the run record (config.json)


def test_record_round_trip_through_disk(trained, tmp_path):
    record = checkpoint.read_record(trained.path)
    assert record.train == replace(TINY, classifier_layer=2, lora_layers=[0, 1, 2, 3])  # as trained
    assert record.class_tokens == trained.state.class_tokens.as_dict() and record.status == "complete"
    record.write(tmp_path / "config.json")
    again = RunRecord.read(tmp_path / "config.json")
    assert again == record
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads((trained.path / "config.json").read_text())


def test_record_reads_an_older_config_and_keeps_unknown_keys(trained, tmp_path):
    """A config.json of an earlier version (fewer keys) reads with defaults; keys it does not know survive."""
    full = json.loads((trained.path / "config.json").read_text())
    old = {k: full[k] for k in ("model", "classifier_layer", "lora_rank", "cls_weight", "steps", "final_accuracy",
                                "steps_completed", "status", "learning_rate", "seed", "lora_scale", "lora_layers",
                                "class_tokens")}
    (tmp_path / "config.json").write_text(json.dumps({**old, "comment": "from elsewhere"}))
    record = RunRecord.read(tmp_path / "config.json")
    assert record.train.learning_rate == 1e-2 and record.train.snapshot_size == TrainConfig().snapshot_size
    assert record.lora_targets == ["v", "o"] and record.architecture == {} and record.final_answer_accuracy is None
    written = record.updated(final_accuracy=0.5).to_dict()
    assert written["comment"] == "from elsewhere" and written["final_accuracy"] == 0.5
    assert list(written)[:6] == ["model", "classifier_layer", "lora_rank", "cls_weight", "steps", "final_accuracy"]


def test_record_refuses_files_that_are_not_run_records(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(LazarusError, match="not a lazarus_nb run record: it has no 'model'"):
        RunRecord.read(tmp_path / "config.json")
    with pytest.raises(LazarusError, match="not a lazarus_nb run record"):
        checkpoint.resumable_record(tmp_path)
    (tmp_path / "config.json").unlink()
    (tmp_path / "adapter_config.json").write_text("{}")  # a plain mlx-lm adapter: nothing to resume or verify
    with pytest.raises(LazarusError, match="not a lazarus_nb training checkpoint, so it cannot be resumed"):
        checkpoint.resumable_record(tmp_path)
    with pytest.raises(LazarusError, match="plain mlx-lm adapter"):
        checkpoint.read_record(tmp_path)
