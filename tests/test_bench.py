"""The benchmark (bench/train_step.py) on the tiny llama: it times the trainer's step on the trainer's first
batch, and its measurement runs end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lazarus_nb
from lazarus_nb.data.prompts import balanced_batches
from lazarus_nb.data.tokens import Batch
from lazarus_nb.train import loop as train_mod
from lazarus_nb.train.loop import TrainConfig, prepare, train

BENCH = Path(__file__).resolve().parents[1] / "bench" / "train_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train_step", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trainers_first_batch(path: str, monkeypatch) -> tuple[Batch, Any]:
    """(the batch a default run's step 1 trains on, caught where the trainer builds it; the tokenizer)."""
    used: list[Batch] = []
    real = train_mod.make_batch
    monkeypatch.setattr(train_mod, "make_batch", lambda *a, **k: used.append(real(*a, **k)) or used[-1])

    def stop_after_step_1(event):
        if event.kind == "step":
            raise KeyboardInterrupt

    loaded = lazarus_nb.load_model(path)
    with pytest.raises(KeyboardInterrupt):
        train(loaded, prepare(loaded, TrainConfig()), callback=stop_after_step_1)
    assert len(used) == 1
    return used[0], loaded.tokenizer


def test_bench_batch_is_the_trainers_first_batch(bench, tiny_model_dir, monkeypatch):
    path = str(tiny_model_dir("llama"))
    setup = bench.build(path, TrainConfig().batch_size)
    trained, tokenizer = trainers_first_batch(path, monkeypatch)
    for name in bench.BATCH_FIELDS:
        assert np.array_equal(np.array(getattr(setup.batch, name)), np.array(getattr(trained, name))), name
    # not trivially so: the schedule without token lengths (what the bench once used) starts with another batch
    cfg, train_set = setup.state.config, setup.state.train_set
    unbucketed = balanced_batches([s.label for s in train_set], [0] * len(train_set), cfg.batch_size, cfg.steps,
                                  cfg.seed)[0]
    other = train_mod.batch_for(tokenizer, setup.state, unbucketed)
    assert other.tokens.shape != trained.tokens.shape or not np.array_equal(other.tokens, trained.tokens)


@pytest.mark.slow
def test_bench_measures_the_tiny_model(bench, tiny_model_dir, tmp_path, capsys, monkeypatch):
    path = str(tiny_model_dir("llama"))
    # a random tiny model never becomes readable: pretend the snapshot at step 25 is, to time-to-readable it
    monkeypatch.setattr(train_mod.History, "steps_to_readable", lambda self, layer, threshold=0.9: 25)
    out = tmp_path / "train_step.json"
    bench.main(["--model", path, "--rounds", "2", "--warmup", "1", "--no-peer-padded", "--run-steps", "26",
                "--out", str(out)])
    r = json.loads(out.read_text())
    first = bench.build(path, TrainConfig().batch_size).batch
    real, _ = bench.lengths_of(first)
    assert r["batch_shape"] == list(first.tokens.shape) and r["real_tokens"] == sum(real)
    assert len(r["step_seconds_all"]) == len(r["peer_step_seconds_all"]) == 2
    assert 0 < r["step_seconds"] < 60 and 0 < r["peer_step_seconds"] < 60
    assert r["peer_loss_equals_answer_loss"] < 1e-4  # the peer scores exactly our answer tokens
    assert r["mfu"] > 0 and r["speedup_vs_mlx_lm"] > 0
    # (a) is the step train() runs for a default run (500 steps: compiled), the other variant beside it
    assert r["step_compiled"] is True and r["other_step_seconds"] > 0
    # the default run's first 26 steps: snapshots at 0 and 25, one mlx-lm step per step of ours
    assert r["run_steps"] == 26 and len(r["run_snapshot_seconds"]) == 2
    assert r["run_speedup_with_snapshots"] == pytest.approx(
        r["run_peer_step_seconds_mean"] / r["run_seconds_per_step_with_snapshots"])
    assert r["steps_to_readable"] == 25
    assert r["run_first_snapshot_seconds"] < r["time_to_readable_seconds"]  # the step-0 snapshot, then 25 steps
    printed = capsys.readouterr().out
    assert "(a) our dual-reward step" in printed and "(b) mlx-lm default_loss step" in printed
