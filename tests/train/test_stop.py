"""--stop-when-readable: the trainer stops at the second consecutive snapshot whose full-vocab top-1 at the
classifier layer reaches the threshold (never after a single one), the stop is recorded (state, checkpoint on
disk, the result JSON), a resumed stopped run does not train further, a default run does all its steps; and the
option's parsing (flag alone, a value, bad values) and range check.

The snapshot accuracies are scripted (a ``Trainer`` whose ``snapshot`` is ``Scripted``), so the stop step is known in
advance; everything else (steps, schedule, checkpoint) is the real trainer on the tiny llama."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from lazarus_nb import LazarusError
from lazarus_nb.app import cli, cli_args, commands
from lazarus_nb.run import steps as workflow
from lazarus_nb.train import checkpoint
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.history import History, Snapshot
from lazarus_nb.train.loop import Trainer, prepare
from lazarus_nb.train.record import RunRecord

CONFIG = TrainConfig(steps=8, num_samples=16, heldout_samples=8, snapshot_size=4, lora_rank=4, batch_size=4,
                     snapshot_every=1, learning_rate=1e-2, seed=0)


class Scripted:
    """A ``Trainer.snapshot`` whose full-vocab top-1 at every layer is ``accuracies[i]`` for its i-th call, i.e.
    for the snapshot of step ``i`` with snapshot_every 1 (step 0 is the base model)."""

    def __init__(self, accuracies):
        self.accuracies = list(accuracies)
        self.steps: list[int] = []

    def __call__(self, lens, loaded, state):
        acc = self.accuracies[len(self.steps)]
        self.steps.append(state.step)
        n = loaded.num_layers
        return Snapshot(state.step, [0.5] * n, [acc] * n, [acc] * n)


class Events(TrainingCallback):
    """Every report as (kind, step), in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    def on_step(self, log, state):
        self.log.append(("step", log.step))

    def on_snapshot(self, snapshot, seconds, state):
        self.log.append(("snapshot", snapshot.step))

    def on_stop(self, state):
        self.log.append(("stop", state.step))


@pytest.mark.parametrize("accuracies, stop", [
    ([0.0, 0.95, 0.5, 0.95, 0.95, 1.0, 1.0, 1.0, 1.0], 4),  # a single readable snapshot is not enough
    ([0.0, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2),  # >= the threshold: 0.9 itself counts
    ([0.95, 0.95, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1),  # the base model's snapshot is the first of the two
])
def test_stops_exactly_at_the_second_consecutive_readable_snapshot(fresh, accuracies, stop):
    scripted = Scripted(accuracies)
    loaded, events, saves = fresh(), Events(), []
    config = replace(CONFIG, stop_when_readable=0.9, checkpoint_every=1)
    state = Trainer(snapshot=scripted).train(loaded, prepare(loaded, config), callback=events,
                                             save=lambda st: saves.append(st.step))

    assert state.step == stop and state.status == "complete" and state.stop_reason == "readable"
    assert state.config.steps == 8  # the configured value is kept
    assert [s.step for s in state.history.steps] == list(range(1, stop + 1))
    assert scripted.steps == list(range(stop + 1))  # every due snapshot was taken, the stop step's included
    assert [s.step for s in state.history.snapshots] == list(range(stop + 1))
    assert events.log[-3:] == [("step", stop), ("snapshot", stop), ("stop", stop)]
    assert saves == list(range(1, stop))  # periodic saves; the stop step is the caller's final save
    steps, _, values = state.history.emergence("top1_acc")
    assert steps[-1] == stop and values.shape[1] == stop + 1


def test_never_two_readable_in_a_row_runs_all_steps(fresh):
    loaded = fresh()
    state = Trainer(snapshot=Scripted([0.95, 0.5] * 5)).train(loaded, prepare(loaded, replace(CONFIG,
                                                                                            stop_when_readable=0.9)))
    assert state.step == 8 and state.stop_reason == "steps" and state.status == "complete"


def test_default_run_does_every_step_even_when_readable(fresh):
    loaded, events = fresh(), Events()
    state = Trainer(snapshot=Scripted([1.0] * 9)).train(loaded, prepare(loaded, CONFIG), callback=events)
    assert CONFIG.stop_when_readable is None
    assert state.step == 8 and state.stop_reason == "steps" and len(state.history.steps) == 8
    assert not [e for e in events.log if e[0] == "stop"]


def test_a_streak_completed_at_the_last_step_is_not_an_early_stop(fresh):
    loaded = fresh()
    trainer = Trainer(snapshot=Scripted([0.0] * 7 + [1.0, 1.0]))
    state = trainer.train(loaded, prepare(loaded, replace(CONFIG, stop_when_readable=0.9)))
    assert state.step == 8 and state.stop_reason == "steps"


def test_stopped_run_checkpoint_and_resume(fresh, tmp_path):
    """The checkpoint read back from disk says where and why the run stopped; a resumed run does not train."""
    trainer = Trainer(snapshot=Scripted([0.0, 0.95, 0.5, 0.95, 0.95] + [1.0] * 4))
    ckpt = tmp_path / "run"
    config = replace(CONFIG, stop_when_readable=0.9)
    result = workflow.run_dual_reward(fresh(), config, output=ckpt, answers=False, trainer=trainer)
    payload = result.to_dict()
    assert payload["stop_reason"] == "readable" and payload["status"] == "complete"
    assert [h["step"] for h in payload["history"]] == [1, 2, 3, 4] and payload["steps_to_readable"] == 1

    record = RunRecord.read(ckpt / "config.json")
    assert record.stop_reason == "readable" and record.status == "complete"
    assert record.steps_completed == 4 and record.train.steps == 8 and record.train.stop_when_readable == 0.9
    assert len(json.loads((ckpt / "history.json").read_text())["steps"]) == 4

    scripted = Scripted([1.0] * 9)  # a resumed run that trained would take new snapshots
    events = Events()
    resumed = workflow.run_dual_reward(fresh(), config, output=ckpt, resume=True, answers=False,
                                       callback=events, trainer=Trainer(snapshot=scripted))
    assert events.log == [] and scripted.steps == []
    assert resumed.state.step == 4 and resumed.state.stop_reason == "readable"
    assert len(resumed.state.history.steps) == 4
    assert checkpoint.read_record(ckpt).steps_completed == 4


def test_interrupted_run_keeps_no_stop_reason_and_old_records_read():
    assert RunRecord.from_dict({"model": "m", "classifier_layer": 2, "lora_rank": 4, "cls_weight": 0.4,
                                "steps": 10, "status": "complete"}).stop_reason is None
    old = RunRecord.from_dict({"model": "m", "classifier_layer": 2, "lora_rank": 4, "cls_weight": 0.4, "steps": 10})
    assert old.train.stop_when_readable is None and "stop_reason" not in old.extra
    again = RunRecord.from_dict(old.updated(stop_reason="readable").to_dict())
    assert again.stop_reason == "readable"


def test_readable_streak_reads_the_classifier_layer_only():
    history = History([0, 1], snapshots=[Snapshot(s, [0, 0], [0, 0], [0.0, acc]) for s, acc in
                                         enumerate([0.95, 0.95])])
    assert history.readable_streak(1, 0.9) and not history.readable_streak(0, 0.9)
    assert not History([0, 1], snapshots=history.snapshots[:1]).readable_streak(1, 0.9)  # one is not a streak
    assert not history.readable_streak(1, 0.96)


# ---------------------------------------------------------------- the option


def parse(*args: str):
    return cli.build_parser().parse_args(["introspect", "dual-reward", *args])


def test_option_alone_value_and_default():
    assert cli_args.train_config(parse("--stop-when-readable"))[0].stop_when_readable == 0.9
    assert cli_args.train_config(parse("--stop-when-readable", "0.75"))[0].stop_when_readable == 0.75
    assert cli_args.train_config(parse())[0].stop_when_readable is None
    # the optional value does not swallow the next option
    args = parse("--stop-when-readable", "--steps", "5")
    assert args.stop_when_readable == 0.9 and args.steps == 5


def test_option_bad_value_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        parse("--stop-when-readable", "often")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--stop-when-readable: must be a number, got 'often'" in err


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2", "nan"])
def test_option_out_of_range_is_one_sentence_exit_2(tiny_path, tmp_path, capsys, value):
    code = cli.main(["introspect", "dual-reward", "-m", str(tiny_path), "--stop-when-readable", value, "-o",
                     str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --stop-when-readable must be an accuracy in (0, 1]")
    assert "\n" not in err and not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("value", [0.0, 1.01, float("nan")])
def test_config_check_range(value):
    with pytest.raises(LazarusError, match=r"stop_when_readable must be an accuracy in \(0, 1\]"):
        replace(TrainConfig(), stop_when_readable=value).check()
    replace(TrainConfig(), stop_when_readable=1.0).check()


def test_step_table_ends_with_the_stop_step_row(fresh, capsys):
    """The CLI's step table as the trainer drives it: a row every 3 steps, and the row of step 4, where the run
    stops (before its configured 8 steps), closes the table."""
    loaded = fresh()
    progress = commands.Progress(commands.Out(False), log_every=3, start_step=0, total_steps=8)
    trainer = Trainer(snapshot=Scripted([0.0, 0.95, 0.5, 0.95, 0.95] + [1.0] * 4))
    state = trainer.train(loaded, prepare(loaded, replace(CONFIG, stop_when_readable=0.9)), callback=progress)
    assert state.step == 4
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert rows == ["3", "4"] and progress.closed


# ---------------------------------------------------------------- the training panel's switch


def test_train_panel_switch(fresh):
    import matplotlib

    matplotlib.use("Agg")
    from lazarus_nb.app.train_panel import TrainPanel

    trainer = Trainer(snapshot=Scripted([0.0, 0.95, 0.5, 0.95, 0.95] + [1.0] * 4))
    panel = TrainPanel(fresh(), CONFIG, answers=False, trainer=trainer)
    assert not panel.stop_when_readable.value and panel.config().stop_when_readable is None
    assert panel.stop_when_readable_value.value == 0.9  # what the switch waits for when turned on
    panel.stop_when_readable.value = True
    panel.stop_when_readable_value.value = 0.8
    assert panel.config().stop_when_readable == 0.8
    result = panel.run()
    assert result is not None and result.state.step == 4 and result.state.stop_reason == "readable"
    assert panel.progress.value == 4 and panel.progress.max == 8 and panel.progress.bar_style == "success"
    assert "stopped early at step 4 of 8" in panel.status.value
    assert [s.step for s in panel.history.snapshots] == [0, 1, 2, 3, 4]

    panel.stop_when_readable_value.value = 1.5
    assert panel.run() is None and "stop_when_readable must be an accuracy in (0, 1]" in panel.status.value
    assert TrainPanel(fresh(), replace(CONFIG, stop_when_readable=0.7)).stop_when_readable_value.value == 0.7
