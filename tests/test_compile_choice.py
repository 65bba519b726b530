"""``compile_step``: when train() compiles its step (``TrainConfig.compiles``), and that the compiled run trains the
same."""

from __future__ import annotations

from dataclasses import replace

import pytest

import lazarus_nb
from lazarus_nb import LazarusError
from lazarus_nb.app.profiles import SMOKE_TRAIN
from lazarus_nb.train import loop as train_mod
from lazarus_nb.train.config import COMPILE_MIN_STEPS, TrainConfig
from lazarus_nb.train.loop import prepare, train
from lazarus_nb.train.record import RunRecord


def run(path: str, monkeypatch, compile_step: str) -> tuple[list[bool], list[tuple[float, float, float]]]:
    """(the compile flag of every make_step train() built, the per-step losses) of a 4-step run."""
    flags: list[bool] = []
    real = train_mod.make_step

    def recording(*a, **k):
        flags.append(k["compile"])
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(train_mod, "make_step", recording)
        loaded = lazarus_nb.load_model(path)
        state = train(loaded, prepare(loaded, replace(SMOKE_TRAIN, snapshot_every=0, compile_step=compile_step)))
    return flags, [(s.total, s.cls_loss, s.ans_loss) for s in state.history.steps]


def test_auto_compiles_long_runs_only():
    auto = TrainConfig()
    assert auto.compile_step == "auto" and auto.compiles(auto.steps)  # a default run (500 steps) compiles
    assert auto.compiles(COMPILE_MIN_STEPS) and not auto.compiles(COMPILE_MIN_STEPS - 1)
    # a run that stops when readable ends after ~50 steps: not worth a cold build
    assert not replace(auto, stop_when_readable=0.9).compiles(auto.steps)
    assert replace(auto, compile_step="always").compiles(1)
    assert not replace(auto, compile_step="never").compiles(10_000)
    with pytest.raises(LazarusError, match="compile_step must be one of auto, always, never, got 'yes'"):
        replace(auto, compile_step="yes").check()


def test_records_saved_with_the_old_switch_read_as_trained():
    data = RunRecord(model="m", train=TrainConfig(classifier_layer=1)).to_dict()
    assert data["compile_step"] == "auto"
    assert RunRecord.from_dict({**data, "compile_step": True}).train.compile_step == "always"
    assert RunRecord.from_dict({**data, "compile_step": False}).train.compile_step == "never"


def test_a_short_run_is_not_compiled_and_the_compiled_run_trains_the_same(tiny_model_dir, monkeypatch):
    path = str(tiny_model_dir("llama"))
    auto_flags, auto = run(path, monkeypatch, "auto")  # 4 steps: auto leaves it plain
    compiled_flags, compiled = run(path, monkeypatch, "always")
    assert auto_flags == [False] and compiled_flags == [True]
    assert compiled == auto  # bit-identical losses, step by step
