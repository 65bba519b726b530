"""``compile_step``: when train() compiles its step (``TrainConfig.compiles``), and that the compiled run trains the
same."""

from __future__ import annotations

from dataclasses import replace

import pytest

import lazarus_nb
from lazarus_nb import LazarusError
from lazarus_nb.app.profiles import SMOKE_TRAIN
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.train.config import COMPILE_MIN_STEPS, TrainConfig
from lazarus_nb.train.loop import Trainer, prepare, scheduled_batches
from lazarus_nb.train.record import RunRecord


def run(path: str, compile_step: str) -> tuple[int, list[tuple[float, float, float]]]:
    """(how often the Python loss ran, the per-step losses) of a 4-step run whose every step trains on the
    schedule's first batch. Compiled, the loss runs once, when ``mx.compile`` traces it (one batch shape, so
    no retrace); plain, it runs at every step."""
    calls: list[int] = []

    def counted_loss(*args):
        calls.append(1)
        return dual_loss(*args)

    def first_batch_every_step(tokenizer, state, group=None):
        first = next(iter(scheduled_batches(tokenizer, state, group)))
        return [first] * (state.config.steps - state.step)

    loaded = lazarus_nb.load_model(path)
    config = replace(SMOKE_TRAIN, snapshot_every=0, compile_step=compile_step)
    state = Trainer(loss=counted_loss, batches=first_batch_every_step).train(loaded, prepare(loaded, config))
    return len(calls), [(s.total, s.cls_loss, s.ans_loss) for s in state.history.steps]


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


def test_a_short_run_is_not_compiled_and_the_compiled_run_trains_the_same(tiny_model_dir):
    path = str(tiny_model_dir("llama"))
    auto_calls, auto = run(path, "auto")  # 4 steps: auto leaves it plain
    compiled_calls, compiled = run(path, "always")
    assert SMOKE_TRAIN.steps == 4 and not SMOKE_TRAIN.compiles(4)
    assert auto_calls == 4 and compiled_calls == 1
    assert compiled == auto  # bit-identical losses, step by step
    assert len({total for total, _, _ in auto}) == 4  # each step saw the previous one's update
