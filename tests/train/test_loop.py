"""The dual-reward trainer (train.py) on the tiny llama: the step function, what training changes,
determinism, Adam, interrupt/resume, divergence, config validation."""

from __future__ import annotations

import json
from dataclasses import replace

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import lazarus_nb
from lazarus_nb import LazarusError
from lazarus_nb.data.prompts import balanced_batches
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.model import lora
from lazarus_nb.model.hooks import parts
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.run import steps as workflow
from lazarus_nb.train import checkpoint
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.history import History
from lazarus_nb.train.loop import (
    Diverged,
    TrainConfig,
    Trainer,
    batch_for,
    make_step,
    prepare,
    schedule,
    scheduled_batches,
    train,
)

TINY = TrainConfig(steps=2, num_samples=16, heldout_samples=8, snapshot_size=4, lora_rank=4, batch_size=4,
                   snapshot_every=0, learning_rate=1e-2, seed=0)


@pytest.fixture(scope="module")
def template(tiny_model_dir):
    loaded = lazarus_nb.load_model(str(tiny_model_dir("llama")))
    assert loaded.dtype == "float32"
    return loaded


@pytest.fixture
def fresh(template):
    """Factory: the tiny llama with freshly read weights (training mutates the model, so every run gets its
    own); the tokenizer, which is slow to load and never mutated, is shared."""
    from mlx_lm.utils import load_model

    def make():
        model, _ = load_model(template.path)
        model.eval()
        return replace(template, model=model)

    return make


def base_params(model) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())
            if not k.endswith((".lora_a", ".lora_b"))}


def adapter_arrays(model) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in lora.lora_arrays(model).items()}


def losses(state) -> list[tuple[int, float, float, float]]:
    return [(s.step, s.total, s.cls_loss, s.ans_loss) for s in state.history.steps]


def run(loaded, config, **kw):
    state = prepare(loaded, config)
    return train(loaded, state, **kw)


# ---------------------------------------------------------------- the step function


def first_batches(loaded, state, n: int = 1):
    sched = schedule(loaded.tokenizer, state)
    return [batch_for(loaded.tokenizer, state, sched[i]) for i in range(n)]


def optimizer_arrays(optimizer) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(optimizer.state)}


def test_step_returns_the_dual_loss_before_its_update_and_moves_only_the_adapters(fresh):
    loaded = fresh()
    state = prepare(loaded, TINY)
    (batch,) = first_batches(loaded, state)
    lens = LogitLens(loaded.model)
    expected = [x.item() for x in dual_loss(lens, batch, state.classifier_layer, TINY.cls_weight)]
    base, adapters_before = base_params(loaded.model), adapter_arrays(loaded.model)

    step = make_step(loaded.model, state.optimizer, state.classifier_layer, TINY.cls_weight)
    losses = step(batch)

    assert list(losses) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert losses.total == pytest.approx(TINY.cls_weight * losses.cls_loss + (1 - TINY.cls_weight) * losses.ans_loss,
                                         rel=1e-6)
    assert all(np.array_equal(v, base[k]) for k, v in base_params(loaded.model).items()), "a base weight moved"
    after = adapter_arrays(loaded.model)
    assert all(not np.array_equal(after[k], v) for k, v in adapters_before.items() if k.endswith("_B"))
    # the loss the step returned is the one before its update: the same batch now scores differently
    again = [x.item() for x in dual_loss(lens, batch, state.classifier_layer, TINY.cls_weight)]
    assert again[0] != pytest.approx(expected[0], rel=1e-6)


@pytest.mark.slow
def test_compiled_step_gives_the_uncompiled_losses(fresh):
    runs = []
    for compile in (False, True):
        loaded = fresh()
        state = prepare(loaded, TINY)
        step = make_step(loaded.model, state.optimizer, state.classifier_layer, TINY.cls_weight, compile=compile)
        runs.append(([list(step(b)) for b in first_batches(loaded, state, 2)], adapter_arrays(loaded.model)))
    (plain, plain_arrays), (compiled, compiled_arrays) = runs
    assert np.allclose(compiled, plain, rtol=0, atol=1e-5)
    assert plain[1] != plain[0]  # the second step saw the first one's update
    assert all(np.allclose(compiled_arrays[k], v, atol=1e-6) for k, v in plain_arrays.items())


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["plain", "compiled"])
def test_a_nan_loss_raises_before_the_update(fresh, compile):
    loaded = fresh()
    state = prepare(loaded, TINY)
    (batch,) = first_batches(loaded, state)
    step = make_step(loaded.model, state.optimizer, state.classifier_layer, TINY.cls_weight, compile=compile)
    step(batch)  # one real step first: Adam's moments are non-zero, so an applied NaN update would show
    adapters_before, moments_before = adapter_arrays(loaded.model), optimizer_arrays(state.optimizer)
    trunk = parts(loaded.model)[1]
    norm = trunk.norm.weight
    trunk.norm.weight = norm * float("nan")  # a NaN in the frozen final norm: NaN losses and gradients

    with pytest.raises(Diverged, match="diverged") as info:
        step(batch)

    assert isinstance(info.value, LazarusError) and np.isnan(info.value.loss)
    after = adapter_arrays(loaded.model)
    assert all(np.array_equal(after[k], v) for k, v in adapters_before.items()), "the NaN update was applied"
    moments = optimizer_arrays(state.optimizer)
    assert all(np.array_equal(moments[k], v) for k, v in moments_before.items())
    trunk.norm.weight = norm
    assert all(np.isfinite(step(batch)))  # the step is still usable


# ---------------------------------------------------------------- what a step changes


def test_training_changes_only_the_vo_adapters(fresh):
    loaded = fresh()
    original = base_params(loaded.model)
    state = prepare(loaded, TINY)
    base_before = base_params(loaded.model)
    # wrapping moves v_proj/o_proj weights under ".linear" and changes no value
    assert {k.replace(".linear.", "."): v for k, v in base_before.items()}.keys() == original.keys()
    assert all(np.array_equal(v, original[k.replace(".linear.", ".")]) for k, v in base_before.items())
    trainable = [k for k, _ in tree_flatten(loaded.model.trainable_parameters())]
    assert trainable and all(k.endswith((".lora_a", ".lora_b")) for k in trainable)
    assert all(".self_attn.v_proj." in k or ".self_attn.o_proj." in k for k in trainable)
    assert state.trainable_params == lora.expected_count(4, 4, 64, 2 * 16, 4 * 16) == 4 * 4 * (96 + 128)
    b_before = {k: v for k, v in adapter_arrays(loaded.model).items() if k.endswith("_B")}
    assert all((v == 0).all() for v in b_before.values())

    train(loaded, state)

    base_after = base_params(loaded.model)
    assert base_after.keys() == base_before.keys()
    for k, v in base_before.items():
        assert np.array_equal(base_after[k], v), f"base parameter {k} changed"
    after = adapter_arrays(loaded.model)
    assert all(np.abs(after[k]).max() > 0 for k in b_before), "every B matrix must have been updated"
    assert state.status == "complete" and state.step == 2
    assert [s.step for s in state.history.steps] == [1, 2]
    assert [s.step for s in state.history.snapshots] == [0, 2]  # snapshot_every=0: first and last only


def recording_batches(used: list):
    """The trainer's own batches (``scheduled_batches``), each kept in ``used`` as the trainer takes it."""
    def batches(tokenizer, state, group=None):
        for batch in scheduled_batches(tokenizer, state, group):
            used.append(batch)
            yield batch
    return batches


def test_first_step_is_adam_on_the_dual_loss_gradient(fresh):
    """One step moves the adapters by mlx's Adam (given learning rate) on the dual-loss gradient of the batch
    the trainer used, recomputed here on an identically initialised model; plain SGD (the original's bug)
    would differ."""
    config = replace(TINY, steps=1, learning_rate=3e-3)
    used = []
    trained = fresh()
    state = prepare(trained, config)
    before = {k: np.array(v) for k, v in tree_flatten(trained.model.trainable_parameters())}
    Trainer(batches=recording_batches(used)).train(trained, state)
    (batch,) = used
    assert batch.size == config.batch_size

    reference = fresh()
    ref_state = prepare(reference, config)  # same seed: the same A initialisation
    model = reference.model
    params = dict(tree_flatten(model.trainable_parameters()))
    assert all(np.array_equal(np.array(params[k]), before[k]) for k in before)
    lens = LogitLens(model)
    _, grads = nn.value_and_grad(
        model, lambda b: dual_loss(lens, b, ref_state.classifier_layer, config.cls_weight)[0])(batch)
    # Textbook Adam's first step from zero moments, by hand: m_hat = g, v_hat = g^2, so each parameter moves
    # by lr * g / (|g| + eps), i.e. by the learning rate itself (mlx's default, without bias correction, would
    # move by lr * 0.1 / sqrt(0.001) ~ 3.2 lr; docs/science.md).
    lr, eps = config.learning_rate, 1e-8
    expected = {k: np.array(params[k]) - lr * np.array(g) / (np.abs(np.array(g)) + eps) for k, g in tree_flatten(grads)}
    sgd = {k: params[k] - config.learning_rate * g for k, g in tree_flatten(grads)}

    after = dict(tree_flatten(trained.model.trainable_parameters()))
    assert after.keys() == expected.keys()
    for k, v in after.items():
        assert np.allclose(np.array(v), np.array(expected[k]), atol=1e-6), k
        if k.endswith(".lora_a"):  # B = 0 at step 1, so A's gradient and its Adam update are exactly zero
            assert np.array_equal(np.array(v), before[k])
        else:
            assert not np.allclose(np.array(v), np.array(sgd[k]), atol=1e-6), f"{k} looks like an SGD step"


# ---------------------------------------------------------------- reproducibility


def test_same_seed_same_history_other_seed_differs(fresh):
    config = TINY
    a, b = run(fresh(), config), run(fresh(), config)
    assert len(a.history.steps) == 2
    assert losses(a) == losses(b)
    assert a.history.snapshots == b.history.snapshots
    c = run(fresh(), replace(config, seed=1))
    assert [x[1:] for x in losses(c)] != [x[1:] for x in losses(a)]


def test_batch_schedule_is_a_pure_prefix_stable_epoch_shuffle():
    n, bs, seed = 10, 4, 3
    labels, lengths = [i % 4 for i in range(n)], [5 + i % 3 for i in range(n)]

    def schedule(steps: int, s: int = seed) -> list[list[int]]:
        return [b.tolist() for b in balanced_batches(labels, lengths, bs, steps, s)]

    long = schedule(7)
    assert len(long) == 7 and all(1 <= len(b) <= bs for b in long)
    assert schedule(7) == long  # pure
    assert schedule(3) == long[:3]  # a resumed run sees the same batches
    # every epoch uses each sample exactly once before any sample repeats
    flat = [i for b in long for i in b]
    assert sorted(flat[:n]) == list(range(n))
    assert schedule(7, seed + 1) != long


class Events(TrainingCallback):
    """Every report as (kind, step, the state's step); snapshots also keep what they carried."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []
        self.snapshots: list[tuple] = []

    def on_step(self, log, state):
        self.events.append(("step", log.step, state.step))

    def on_snapshot(self, snapshot, seconds, state):
        self.events.append(("snapshot", snapshot.step, state.step))
        self.snapshots.append((snapshot, seconds, state.history.snapshots[-1]))

    def on_stop(self, state):
        self.events.append(("stop", state.step, state.step))


def test_events_snapshots_and_periodic_saves(fresh):
    loaded = fresh()
    events, saves = Events(), []
    config = replace(TINY, steps=3, snapshot_every=2, checkpoint_every=1)
    state = run(loaded, config, callback=events, save=lambda st: saves.append((st.step, st.status)))
    assert events.events == [("snapshot", 0, 0), ("step", 1, 1), ("step", 2, 2), ("snapshot", 2, 2),
                             ("step", 3, 3), ("snapshot", 3, 3)]
    # each snapshot report carries the snapshot just recorded and the (positive) seconds it took
    assert [snap for snap, _, _ in events.snapshots] == state.history.snapshots
    assert all(snap is recorded and seconds > 0 for snap, seconds, recorded in events.snapshots)
    assert saves == [(1, "running"), (2, "running")]  # the last step is saved by the caller, with its metrics
    assert [s.step for s in state.history.snapshots] == [0, 2, 3]
    n_layers = loaded.num_layers
    for snap in state.history.snapshots:
        assert len(snap.prob) == len(snap.restricted_acc) == len(snap.top1_acc) == n_layers
        assert all(0 <= p <= 1 for p in snap.prob)
    steps, layers, values = state.history.emergence("prob")
    assert steps == [0, 2, 3] and layers == list(range(n_layers)) and values.shape == (n_layers, 3)
    assert values[:, 1].tolist() == state.history.snapshots[1].prob
    again = History.from_dict(json.loads(json.dumps(state.history.to_dict())))
    assert again == state.history


# ---------------------------------------------------------------- interrupt and resume


class Interrupt(TrainingCallback):
    """Callback that presses Ctrl-C when the given step has completed."""

    def __init__(self, at: int):
        self.at = at

    def on_step(self, log, state):
        if log.step == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("lora_layers", [None, [1, 3]], ids=["all-layers", "layers-1-3"])
def test_interrupt_saves_and_resume_reproduces_the_uninterrupted_run(fresh, tmp_path, lora_layers):
    config = replace(TINY, steps=3, lora_layers=lora_layers, checkpoint_every=100)
    reference_model = fresh()
    reference = run(reference_model, config)

    loaded = fresh()
    ckpt = tmp_path / "run"
    state = prepare(loaded, config)
    with pytest.raises(KeyboardInterrupt):
        train(loaded, state, callback=Interrupt(2), save=lambda st: checkpoint.save(ckpt, loaded, st))
    saved = json.loads((ckpt / "config.json").read_text())
    assert saved["steps_completed"] == 2 and saved["status"] == "interrupted"
    assert len(json.loads((ckpt / "history.json").read_text())["steps"]) == 2
    assert losses(state) == losses(reference)[:2]

    resumed_model = fresh()
    resumed = workflow.resume_state(resumed_model, ckpt)
    assert resumed.step == 2 and losses(resumed) == losses(reference)[:2]
    train(resumed_model, resumed)
    assert resumed.status == "complete"
    assert losses(resumed) == losses(reference)  # bit-identical continuation
    assert resumed.history.snapshots == reference.history.snapshots
    ref_arrays, res_arrays = adapter_arrays(reference_model.model), adapter_arrays(resumed_model.model)
    assert ref_arrays.keys() == res_arrays.keys()
    assert all(np.array_equal(ref_arrays[k], res_arrays[k]) for k in ref_arrays)


def test_resume_at_a_snapshot_step_keeps_that_snapshot(fresh, tmp_path):
    config = replace(TINY, steps=3, snapshot_every=2)
    reference = run(fresh(), config)
    assert [s.step for s in reference.history.snapshots] == [0, 2, 3]
    loaded = fresh()
    ckpt = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(loaded, prepare(loaded, config), callback=Interrupt(2),
              save=lambda st: checkpoint.save(ckpt, loaded, st))
    resumed_model = fresh()
    resumed = train(resumed_model, workflow.resume_state(resumed_model, ckpt))
    assert losses(resumed) == losses(reference)
    assert [s.step for s in resumed.history.snapshots] == [0, 2, 3]
    assert resumed.history.snapshots == reference.history.snapshots


# ---------------------------------------------------------------- divergence


def test_nan_loss_stops_with_diverged_state(fresh, tmp_path):
    calls = {"n": 0}

    def nan_from_step_2(lens, batch, layer, w, counts=None):
        calls["n"] += 1
        total, cls, ans = dual_loss(lens, batch, layer, w, counts)
        return (total * mx.array(float("nan")), cls, ans) if calls["n"] >= 2 else (total, cls, ans)

    reference = fresh()
    run(reference, replace(TINY, steps=1))
    one_step = adapter_arrays(reference.model)
    trainer = Trainer(loss=nan_from_step_2)
    loaded = fresh()
    ckpt = tmp_path / "run"
    state = prepare(loaded, replace(TINY, steps=3))
    with pytest.raises(LazarusError, match="diverged"):
        trainer.train(loaded, state, save=lambda st: checkpoint.save(ckpt, loaded, st))
    saved = json.loads((ckpt / "config.json").read_text())
    assert saved["status"] == "diverged" and saved["steps_completed"] == 1
    assert state.status == "diverged" and state.step == 1 and len(state.history.steps) == 1
    # the non-finite update was never applied: the model keeps the adapter of step 1, which is what was saved
    kept = adapter_arrays(loaded.model)
    with np.load(ckpt / "lora_weights.npz") as npz:
        assert all(np.array_equal(npz[k], kept[k]) for k in kept)
    assert all(np.isfinite(v).all() for v in kept.values())
    assert all(np.array_equal(one_step[k], kept[k]) for k in kept)

    # without a save hook the error is the same (the state is still at step 1, the loss is still NaN)
    with pytest.raises(LazarusError, match="diverged at step 2"):
        trainer.train(loaded, state)
    assert state.step == 1


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize("layers, expected", [(30, 16), (22, 12), (4, 2), (1, 0)])
def test_default_classifier_layer(layers, expected):
    cfg = TrainConfig()
    assert cfg.for_model(layers).classifier_layer == expected == int(0.55 * layers)
    assert cfg.classifier_layer is None  # resolve returns a copy


@pytest.mark.parametrize("change, words", [
    ({"classifier_layer": 30}, "0..29"),
    ({"classifier_layer": -1}, "0..29"),
    ({"cls_weight": 1.5}, "[0, 1]"),
    ({"cls_weight": -0.1}, "[0, 1]"),
    ({"steps": 0}, "positive"),
    ({"lora_rank": 0}, "positive"),
    ({"learning_rate": 0.0}, "positive"),
    ({"batch_size": 0}, "positive"),
    ({"num_samples": 3}, "at least 4"),
    ({"lora_layers": [30]}, "0..29"),
])
def test_invalid_config_is_one_sentence(change, words):
    with pytest.raises(LazarusError) as info:
        replace(TrainConfig(), **change).for_model(30)
    message = str(info.value)
    assert words in message
    assert "\n" not in message and message.count(". ") == 0


def test_valid_edges_resolve():
    cfg = replace(TrainConfig(), classifier_layer=29, cls_weight=1.0, steps=1).for_model(30)
    assert cfg.classifier_layer == 29 and cfg.cls_weight == 1.0
    assert replace(TrainConfig(), cls_weight=0.0, classifier_layer=0).for_model(30).classifier_layer == 0


def test_empty_lora_layers_is_rejected():
    with pytest.raises(LazarusError, match="layer"):
        replace(TrainConfig(), lora_layers=[]).for_model(30)


def test_impossible_data_request_is_a_lazarus_error(fresh):
    with pytest.raises(LazarusError):
        prepare(fresh(), replace(TINY, heldout_samples=100_000))


def test_training_snapshot_set_is_distinct_balanced_training_problems():
    """The training twin of the snapshot set: as many problems as the held-out snapshot set, class-balanced, each
    a training problem, none held out, none repeated, under every label map (the same problems)."""
    from lazarus_nb.data.prompts import CLASSES, problem, triple
    from lazarus_nb.train.config import TrainConfig
    from lazarus_nb.train.loop import snapshot_set, train_snapshot_set
    from lazarus_nb.train.state import TrainState

    def state(cfg: TrainConfig) -> TrainState:
        train_set, heldout = cfg.split()
        return TrainState(cfg, None, 0, [], 0, 0, None, None, train_set, heldout, 0.0)

    sets = []
    for label_map in ("true", "problem"):
        st = state(TrainConfig(num_samples=800, heldout_samples=100, snapshot_size=32, label_map=label_map))
        twin = train_snapshot_set(st)
        held = {problem(triple(s)) for s in st.heldout}
        assert len(twin) == len(snapshot_set(st)) == 32
        assert all(s in st.train_set for s in twin) and not any(problem(triple(s)) in held for s in twin)
        assert len({triple(s) for s in twin}) == len(twin)
        assert [sum(s.label == c for s in twin) for c in CLASSES] == [8, 8, 8, 8]
        sets.append([triple(s) for s in twin])
    assert sets[0] == sets[1]
