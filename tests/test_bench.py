"""The benchmark (``python -m bench``) on the tiny llama: it times the trainer's step on the trainer's first batch,
its default run reports time-to-readable from the trainer's own snapshot times, and the whole measurement runs end
to end and prints its figures."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import lazarus_nb
from bench import default_run, first_batch
from bench.__main__ import main
from lazarus_nb.data.prompts import balanced_batches
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.loop import TrainConfig, Trainer, batch_for, prepare, scheduled_batches, snapshot


class StopAfterStep1(TrainingCallback):
    def on_step(self, log, state):
        raise KeyboardInterrupt


def trainers_first_batch(path: str):
    """(the batch a default run's step 1 trains on, caught as the trainer takes it; the tokenizer)."""
    used = []

    def recording(tokenizer, state, group=None):
        for batch in scheduled_batches(tokenizer, state, group):
            used.append(batch)
            yield batch

    loaded = lazarus_nb.load_model(path)
    with pytest.raises(KeyboardInterrupt):
        Trainer(batches=recording).train(loaded, prepare(loaded, TrainConfig()), callback=StopAfterStep1())
    assert len(used) == 1
    return used[0], loaded.tokenizer


def test_bench_batch_is_the_trainers_first_batch(tiny_model_dir):
    path = str(tiny_model_dir("llama"))
    setup = first_batch.build(path, TrainConfig().batch_size)
    trained, tokenizer = trainers_first_batch(path)
    for name in first_batch.BATCH_FIELDS:
        assert np.array_equal(np.array(getattr(setup.batch, name)), np.array(getattr(trained, name))), name
    # not trivially so: the schedule without token lengths (what the bench once used) starts with another batch
    cfg, train_set = setup.state.config, setup.state.train_set
    unbucketed = balanced_batches([s.label for s in train_set], [0] * len(train_set), cfg.batch_size, cfg.steps,
                                  cfg.seed)[0]
    other = batch_for(tokenizer, setup.state, unbucketed)
    assert other.tokens.shape != trained.tokens.shape or not np.array_equal(other.tokens, trained.tokens)


def readable_from(step: int):
    """The trainer's snapshot, but reading every layer top-1 from ``step`` on (a random tiny model never does)."""
    def scripted(lens, loaded, state):
        snap = snapshot(lens, loaded, state)
        return snap if state.step < step else replace(snap, top1_acc=[1.0] * len(snap.top1_acc))
    return scripted


@pytest.mark.slow
def test_default_run_times_steps_snapshots_and_time_to_readable(tiny_model_dir):
    r = default_run.measure(str(tiny_model_dir("llama")), 26, Trainer(snapshot=readable_from(25)))
    # the default run's first 26 steps: snapshots at 0 and 25, one mlx-lm step per step of ours
    assert r["run_steps"] == 26 and len(r["run_snapshot_seconds"]) == 2 and all(r["run_snapshot_seconds"])
    assert r["run_step_compiled"] is True  # a default run (500 steps) compiles
    assert r["run_speedup_with_snapshots"] == pytest.approx(
        r["run_peer_step_seconds_mean"] / r["run_seconds_per_step_with_snapshots"])
    assert r["run_snapshot_overhead"] > 0
    assert r["steps_to_readable"] == 25
    assert r["run_first_snapshot_seconds"] < r["time_to_readable_seconds"]  # the step-0 snapshot, then 25 steps


@pytest.mark.slow
def test_bench_measures_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    path = str(tiny_model_dir("llama"))
    out = tmp_path / "train_step.json"
    main(["--model", path, "--rounds", "2", "--warmup", "1", "--no-peer-padded", "--run-steps", "3",
          "--out", str(out)])
    r = json.loads(out.read_text())
    first = first_batch.build(path, TrainConfig().batch_size).batch
    real, _ = first_batch.lengths_of(first)
    assert r["batch_shape"] == list(first.tokens.shape) and r["real_tokens"] == sum(real)
    assert len(r["step_seconds_all"]) == len(r["peer_step_seconds_all"]) == 2
    assert 0 < r["step_seconds"] < 60 and 0 < r["peer_step_seconds"] < 60
    assert r["peer_loss_equals_answer_loss"] < 1e-4  # the peer scores exactly our answer tokens
    assert r["mfu"] > 0 and r["speedup_vs_mlx_lm"] > 0
    # (a) is the step train() runs for a default run (500 steps: compiled), the other variant beside it
    assert r["step_compiled"] is True and r["other_step_seconds"] > 0
    # 3 steps of the default run: only the step-0 snapshot, never readable
    assert r["run_steps"] == 3 and len(r["run_snapshot_seconds"]) == 1 and r["steps_to_readable"] is None
    printed = capsys.readouterr().out
    for figure in ("(a) our dual-reward step", "(b) mlx-lm default_loss step", "(c) sgemm", "speedup a/b",
                   "MFU", "tokens/s", "peer loss == our answer loss", "default run, first 3 steps",
                   "snapshots in place", "time-to-readable: not readable within 3 steps", "target mfu"):
        assert figure in printed, figure


def test_patching_bench_counts_the_work_and_runs_on_the_tiny_model(tiny_model_dir, capsys):
    from bench import patching
    from lazarus_nb.data.pairs import parse_pair
    from lazarus_nb.data.tokens import encode_pair

    path = str(tiny_model_dir("llama"))
    ids = encode_pair(lazarus_nb.load_model(path).tokenizer, parse_pair("7 * 8 = |7 + 8 = "))
    # by hand, 4 blocks: the prompt from positions 1..5 (5+4+3+2+1 tokens), each answer's 2 inputs after each of the
    # 5 positions, through the 3+2+1+0 blocks above the patched one; the clean runs (2 prompts of 6, 4 answers of 2)
    # through all 4; the unembedding at the last prompt position (both first tokens) and at each answer's 2 inputs,
    # for each of 5 positions x 4 layers
    assert patching.work([ids], 4) == {"token_blocks": (15 + 20) * 6 + 20 * 4, "unembed_rows": 5 * 5 * 4,
                                       "patched_cells": 5 * 4}
    r = patching.measure(num_pairs=2, model=path)
    patching.report(r)
    assert r["models"] == ["base model", "adapted model"] and r["seconds"] > 0
    assert "activation patching" in capsys.readouterr().out
