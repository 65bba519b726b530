"""Sweeps (lazarus_nb/sweep.py, run_sweep.sweep, the sweep command and figures) on the tiny random llama model.

The grid, the rows file and the figures are checked on hand-made values; the sweep itself runs two 3-step runs
once (module fixture) and every resume case is checked against those rows; the 2-rank test runs the same grid
under ``mlx.launch -n 2`` and must write the same rows.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from lazarus_nb import files
from lazarus_nb.app import cli, cli_args  # noqa: E402
from lazarus_nb.errors import LazarusError  # noqa: E402
from lazarus_nb.model.load import load_model  # noqa: E402
from lazarus_nb.run import steps as workflow  # noqa: E402
from lazarus_nb.run import sweep as run_sweep
from lazarus_nb.show import figures  # noqa: E402
from lazarus_nb.show import text as report
from lazarus_nb.train import checkpoint  # noqa: E402
from lazarus_nb.train import grid as sweep
from lazarus_nb.train.callbacks import TrainingCallback  # noqa: E402
from lazarus_nb.train.config import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = TrainConfig(steps=3, num_samples=16, heldout_samples=8, snapshot_every=1, snapshot_size=4, batch_size=4)
GRID = {"cls_weight": [0.2, 0.8]}
TINY_ARGS = ["--steps", "3", "--num-samples", "16", "--heldout-samples", "8", "--snapshot-every", "1",
             "--snapshot-size", "4", "--batch-size", "4"]


def timeless(row: dict) -> dict:
    """A row without its wall times (``seconds``, ``config.train_seconds``): what must repeat exactly."""
    out = json.loads(json.dumps(row))
    out.pop("seconds")
    out["config"].pop("train_seconds")
    return out


@pytest.fixture(scope="module")
def model_path(tiny_model_dir) -> str:
    return str(tiny_model_dir("llama"))


@pytest.fixture(scope="module")
def loaded(model_path):
    return load_model(model_path)


@pytest.fixture(scope="module")
def swept(loaded, tmp_path_factory):
    """The 2-run grid swept once: (directory, SweepResult, the rows on_row saw)."""
    out = tmp_path_factory.mktemp("sweep") / "s"
    seen: list[dict] = []
    result = run_sweep.sweep(out, GRID, TINY, model=loaded, answers=False, on_row=seen.append)
    return out, result, seen


# ---------------------------------------------------------------- the grid (no model)


def test_grid_expands_every_combination_in_order_with_its_name():
    grid = sweep.Grid.of({"seed": [0, 1], "cls_weight": [0, 0.5], "learning_rate": [5e-4]}, TINY)
    runs = grid.runs()
    assert [r.name for r in runs] == [  # GRID_FIELDS order whatever the mapping's; the first field slowest
        "cls_weight=0,seed=0,learning_rate=0.0005", "cls_weight=0,seed=1,learning_rate=0.0005",
        "cls_weight=0.5,seed=0,learning_rate=0.0005", "cls_weight=0.5,seed=1,learning_rate=0.0005"]
    assert [r.index for r in runs] == [0, 1, 2, 3]
    assert [(r.config.cls_weight, r.config.seed) for r in runs] == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    assert all(type(r.config.cls_weight) is float and r.config.steps == 3 for r in runs)  # 0 -> 0.0; base kept
    assert sweep.Grid.of({"label_map": ["true", "permuted"]}).runs()[1].name == "label_map=permuted"
    assert sweep.Grid.of({"classifier_layer": [8.0]}).runs()[0].config.classifier_layer == 8  # an int field


@pytest.mark.parametrize("axes, message", [
    ({}, "the sweep grid is empty"),
    ({"steps": [1, 2]}, "'steps' cannot be swept"),
    ({"seed": []}, "seed gives no values"),
    ({"seed": [1, 1]}, "seed gives 1 twice"),
    ({"seed": [0.5]}, "seed values must each be an integer, got 0.5"),
    ({"cls_weight": ["high"]}, "cls_weight values must each be a number"),
    ({"label_map": "permuted"}, "label_map needs a list of values"),
])
def test_bad_grids_are_one_sentence(axes, message):
    with pytest.raises(LazarusError, match=message):
        sweep.Grid.of(axes)


def test_grid_check_names_the_option_of_a_bad_run():
    grid = sweep.Grid.of({"classifier_layer": [1, 9]}, TINY)
    with pytest.raises(LazarusError) as info:
        grid.check(4)
    assert info.value.render(cli_args.option) == "--classifier-layer: layer 9 is outside this model's layers 0..3"
    with pytest.raises(LazarusError) as info:
        sweep.Grid.of({"label_map": ["true", "wrong"]}).check(4)
    assert info.value.render(cli_args.option) == ("--label-map must be one of true, permuted, operand, problem, "
                                                  "got 'wrong'")


def test_ranks_share_the_runs_round_robin():
    runs = list(range(7))
    shares = [sweep.shard(runs, r, 3) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(shares, [])) == runs


# ---------------------------------------------------------------- sweep.jsonl


def test_rows_round_trip_as_strict_json_and_a_cut_short_append_is_dropped(tmp_path):
    a = {"run": "cls_weight=0.2", "config": {"cls_weight": 0.2}, "final": {"answer_nll": float("nan")},
         "steps_to_readable": None, "seconds": 1.5}
    b = {"run": "cls_weight=0.8", "config": {"cls_weight": 0.8}, "final": None, "steps_to_readable": 4, "seconds": 2}
    sweep.append_row(tmp_path, a)
    with open(tmp_path / sweep.ROWS, "ab") as fh:
        fh.write(b'{"run": "cut sh')  # a crash in the middle of an append
    assert [r["run"] for r in sweep.read_rows(tmp_path)] == ["cls_weight=0.2"]  # the cut line is ignored
    sweep.append_row(tmp_path, b)
    lines = (tmp_path / sweep.ROWS).read_text().splitlines()
    assert len(lines) == 2 and "cut sh" not in lines[1]  # ... and cut off by the next append
    back = sweep.read_rows(tmp_path)
    assert back[1] == b
    assert back[0]["final"]["answer_nll"] is None and back[0]["non_finite"] == ["final.answer_nll"]  # strict JSON


def test_a_garbled_row_is_one_sentence(tmp_path):
    (tmp_path / sweep.ROWS).write_text('{"run": "a"}\nnot json\n')
    with pytest.raises(LazarusError, match="line 2 of .* is not JSON"):
        sweep.read_rows(tmp_path)
    (tmp_path / sweep.ROWS).write_text('[1, 2]\n')
    with pytest.raises(LazarusError, match="line 1 of .* is not a sweep row"):
        sweep.read_rows(tmp_path)


# ---------------------------------------------------------------- a sweep and its rows


def test_rows_are_the_runs_config_json_and_dual_reward_final_block(swept, model_path):
    out, result, seen = swept
    names = ["cls_weight=0.2", "cls_weight=0.8"]
    assert [r["run"] for r in result.rows] == names and result.ran == names and result.skipped == []
    on_disk = sweep.read_rows(out)
    assert on_disk == seen == result.rows  # what on_row saw live is what the file holds
    for row in on_disk:
        assert row["config"] == json.loads((out / row["run"] / checkpoint.CONFIG).read_text())
        assert row["config"]["status"] == "complete" and row["config"]["steps_completed"] == 3
        assert set(row) == {"run", "config", "final", "steps_to_readable", "steps_to_readable_train", "stop_reason",
                        "seconds"}
        assert row["seconds"] > 0 and row["stop_reason"] == row["config"]["stop_reason"] == "steps"
    # the same run alone, on a freshly loaded model: the sweep's second run trained on the model its first run
    # had adapted, so this also shows that removing the adapters gives back the base model exactly
    alone = workflow.run_dual_reward(load_model(model_path), replace(TINY, cls_weight=0.8), answers=False).to_dict()
    assert on_disk[1]["final"] == files.json_clean(alone["final"])
    assert on_disk[1]["steps_to_readable"] == alone["steps_to_readable"]
    assert set(result.files) == {"sweep.jsonl", "trade_off.png", "steps_to_readable.png"}
    assert all(Path(p).read_bytes().startswith(b"\x89PNG") for k, p in result.files.items() if k.endswith(".png"))


def _counted_sweep(out, grid, loaded, base=TINY):
    """A sweep that records each run it trains (with its plan), every step it trains and every row."""
    trained, events, rows = [], [], []

    class Steps(TrainingCallback):
        def on_step(self, log, state):
            events.append(log.step)

    def callback_for(planned):
        trained.append(planned)
        return Steps()

    result = run_sweep.sweep(out, grid, base, model=loaded, answers=False, on_row=rows.append,
                            callback_for=callback_for)
    return result, trained, events, rows


def test_a_second_sweep_skips_every_finished_run(swept, loaded):
    out, first, _ = swept
    before = (out / sweep.ROWS).read_text()
    result, trained, events, rows = _counted_sweep(out, GRID, loaded)
    assert trained == [] and events == [] and rows == []  # nothing trained, nothing written
    assert result.skipped == ["cls_weight=0.2", "cls_weight=0.8"] and result.ran == []
    assert (out / sweep.ROWS).read_text() == before and result.rows == first.rows


def test_runs_on_the_same_held_out_set_share_one_base_evaluation(loaded, tmp_path, monkeypatch):
    """cls_weight does not change the base model's evaluation, the seed (the held-out set) does: a 2 x 2 grid
    evaluates the base model once per seed, and each run's final model once (8 evaluations without sharing,
    5 if the seeds' held-out sets were mixed up)."""
    held_out = []
    real = workflow.evaluate_model
    monkeypatch.setattr(workflow, "evaluate_model", lambda *a, **k: held_out.append(a[2]) or real(*a, **k))
    run_sweep.sweep(tmp_path / "s", {"cls_weight": [0.2, 0.8], "seed": [0, 1]}, replace(TINY, steps=1),
                   model=loaded, answers=False)
    assert len(held_out) == 2 + 4 and len({tuple(s.prompt for s in h) for h in held_out}) == 2


def test_an_interrupted_run_resumes_to_the_uninterrupted_row(swept, loaded, tmp_path):
    out = tmp_path / "s"

    class StopAtStep2(TrainingCallback):
        def on_step(self, log, state):
            if log.step == 2:
                raise KeyboardInterrupt  # as Ctrl-C would, inside training

    def stop_at_step_2(planned):
        return StopAtStep2()

    with pytest.raises(KeyboardInterrupt):
        run_sweep.sweep(out, {"cls_weight": [0.2]}, TINY, model=loaded, answers=False, callback_for=stop_at_step_2)
    record = checkpoint.read_record(out / "cls_weight=0.2")
    assert (record.status, record.steps_completed) == ("interrupted", 2) and sweep.read_rows(out) == []

    result, trained, events, rows = _counted_sweep(out, {"cls_weight": [0.2]}, loaded)
    assert [(p.action, p.steps_completed) for p in trained] == [(sweep.RESUME, 2)]
    assert events == [3]  # only the missing step was trained
    assert timeless(rows[0]) == timeless(swept[1].rows[0])  # the row the uninterrupted sweep wrote


def test_a_complete_checkpoint_without_its_row_is_evaluated_not_trained_again(swept, loaded, tmp_path):
    out = tmp_path / "s"
    shutil.copytree(swept[0], out)
    lines = (out / sweep.ROWS).read_text().splitlines(keepends=True)
    (out / sweep.ROWS).write_text(lines[0])  # the process died between the second run's last save and its row
    result, trained, events, rows = _counted_sweep(out, GRID, loaded)
    assert [(p.run.name, p.action) for p in trained] == [("cls_weight=0.8", sweep.RESUME)]
    assert events == []
    assert timeless(rows[0]) == timeless(swept[1].rows[1]) and len(result.rows) == 2


def test_a_diverged_run_gets_its_row_and_the_sweep_goes_on(loaded, tmp_path):
    grid = {"learning_rate": [1e38, 5e-4]}
    result, trained, _, rows = _counted_sweep(tmp_path, grid, loaded, replace(TINY, steps=2))
    assert [r["run"] for r in rows] == ["learning_rate=1e+38", "learning_rate=0.0005"]
    diverged, fine = rows
    assert diverged["final"] is None and diverged["steps_to_readable"] is None
    assert diverged["config"]["status"] == "diverged" and fine["config"]["status"] == "complete"
    assert fine["final"]["heldout_n"] == 8
    again, trained, _, rows = _counted_sweep(tmp_path, grid, loaded, replace(TINY, steps=2))
    assert trained == [] and rows == [] and again.skipped == ["learning_rate=1e+38", "learning_rate=0.0005"]
    assert any("diverged at step 1" in line for line in report.sweep_table(again.rows))


def test_a_directory_swept_with_other_settings_is_refused_before_training(swept, loaded):
    out = swept[0]
    before = (out / sweep.ROWS).read_text()
    with pytest.raises(LazarusError, match="holds run cls_weight=0.2 trained with steps 3, but this sweep asks for 4"):
        _counted_sweep(out, GRID, loaded, replace(TINY, steps=4))
    assert (out / sweep.ROWS).read_text() == before


def test_adding_a_seed_reuses_the_finished_runs_under_their_old_names(loaded, tmp_path):
    """A run is its settings, not its name: once a seed axis is added, ``cls_weight=0`` (seed 0) is the run
    ``cls_weight=0,seed=0`` already trained. The panel runs the second grid (its live rows are ordered by run)."""
    from lazarus_nb.app.sweep_panel import SweepPanel

    out, two = tmp_path / "s", replace(TINY, steps=2)
    run_sweep.sweep(out, {"cls_weight": [0, 1]}, two, model=loaded, answers=False)
    first = sweep.read_rows(out)
    panel = SweepPanel(loaded, out, two, grid={"cls_weight": [0, 1], "seed": [0, 1]}, answers=False)
    result = panel.run()
    assert result.ran == ["cls_weight=0,seed=1", "cls_weight=1,seed=1"]  # only the new seed trained
    assert result.skipped == ["cls_weight=0,seed=0", "cls_weight=1,seed=0"] and result.missing == []
    on_disk = sweep.read_rows(out)
    assert on_disk[:2] == first and len(on_disk) == 4  # no row written twice
    assert sorted((r["config"]["cls_weight"], r["config"]["seed"]) for r in on_disk) == [(0, 0), (0, 1), (1, 0),
                                                                                           (1, 1)]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "cls_weight=0", "cls_weight=0,seed=1", "cls_weight=1", "cls_weight=1,seed=1"]
    # in the grid's order; a reused run's row keeps the name it was written under (its directory)
    assert [r["run"] for r in result.rows] == ["cls_weight=0", "cls_weight=0,seed=1", "cls_weight=1",
                                               "cls_weight=1,seed=1"]
    assert panel.rows == result.rows and panel.progress.value == 4
    table = "\n".join(report.sweep_summary(result))  # labelled by the grid's run names
    assert all(f"  {run.name} " in table for run in result.grid.runs()) and "No row yet" not in table
    # the trade-off figure's groups: one row per seed, not seed 0 twice
    groups = sweep.series(on_disk, ("cls_weight",))[""]
    assert {k: [r["config"]["seed"] for r in v] for k, v in groups.items()} == {(0.0,): [0, 1], (1.0,): [0, 1]}

    again, trained, events, rows = _counted_sweep(out, {"cls_weight": [0, 1], "seed": [0, 1]}, loaded, two)
    assert trained == [] and events == [] and rows == [] and len(sweep.read_rows(out)) == 4
    assert again.rows == result.rows


def test_an_interrupted_run_found_under_an_old_name_resumes_there(loaded, tmp_path):
    out, two = tmp_path / "s", replace(TINY, steps=2)

    class StopAtStep1(TrainingCallback):
        def on_step(self, log, state):
            if log.step == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep.sweep(out, {"cls_weight": [0.2]}, two, model=loaded, answers=False,
                        callback_for=lambda planned: StopAtStep1())
    result, trained, events, rows = _counted_sweep(out, {"cls_weight": [0.2], "seed": [0]}, loaded, two)
    assert [(p.run.name, p.action, p.steps_completed, p.path) for p in trained] == [
        ("cls_weight=0.2,seed=0", sweep.RESUME, 1, out / "cls_weight=0.2")]
    assert events == [2]  # only the missing step
    assert [r["run"] for r in rows] == ["cls_weight=0.2"] and sweep.read_rows(out) == rows == result.rows
    assert checkpoint.read_record(out / "cls_weight=0.2").status == "complete"
    assert not (out / "cls_weight=0.2,seed=0").exists()


def test_a_row_written_before_run_keys_is_matched_by_its_settings(swept, loaded, tmp_path):
    """Rows and directories of an earlier naming (no stored key, a name no grid gives) are found by their
    settings: nothing trains again."""
    out = tmp_path / "s"
    shutil.copytree(swept[0], out)
    old = []
    for row in sweep.read_rows(out):
        name = "w" + row["run"].split("=")[1]
        (out / row["run"]).rename(out / name)
        old.append({**{k: v for k, v in row.items() if k != "key"}, "run": name})
    (out / sweep.ROWS).write_text("".join(json.dumps(r) + "\n" for r in old))
    result, trained, events, rows = _counted_sweep(out, GRID, loaded)
    assert trained == [] and rows == [] and result.skipped == ["cls_weight=0.2", "cls_weight=0.8"]
    assert result.rows == old and result.missing == []


def test_a_run_directory_with_other_settings_under_the_new_name_is_refused(swept, loaded, tmp_path):
    out = tmp_path / "s"
    shutil.copytree(swept[0], out)
    (out / sweep.ROWS).unlink()
    (out / "cls_weight=0.2").rename(out / "cls_weight=0.2,seed=1")  # holds seed 0
    with pytest.raises(LazarusError, match=r"holds run cls_weight=0.2,seed=1 trained with seed 0, but this sweep "
                                           r"asks for 1; give this sweep another -o DIR"):
        _counted_sweep(out, {"cls_weight": [0.2], "seed": [1]}, loaded)


# ---------------------------------------------------------------- figures from hand-made rows


def _row(seed, w, top1, nll, layer=2, readable=None, rank=16):
    return {"run": f"w{w}s{seed}L{layer}r{rank}", "seconds": 1.0, "steps_to_readable": readable,
            "config": {"cls_weight": w, "seed": seed, "classifier_layer": layer, "label_map": "true",
                       "lora_rank": rank, "learning_rate": 5e-4},
            "final": {"heldout_top1_accuracy": top1, "answer_accuracy": None, "answer_nll": nll, "kl_general": None}}


def test_trade_off_points_are_seed_means_with_min_max_bars():
    rows = [_row(0, 0.2, 0.1, 1.0), _row(1, 0.2, 0.3, 2.0), _row(2, 0.2, 0.5, 4.0), _row(0, 0.8, 0.9, 3.0)]
    fig = figures.trade_off_figure(rows)
    accuracy, nll, kl = (ax for ax in fig.axes)
    (bars,) = [c for c in nll.containers if isinstance(c, ErrorbarContainer)]
    line, _, (xbars, ybars) = bars.lines
    assert np.allclose(line.get_xdata(), [7 / 3, 3.0]) and np.allclose(line.get_ydata(), [0.3, 0.9])
    assert np.allclose(xbars.get_segments()[0], [[1.0, 0.3], [4.0, 0.3]])  # min..max NLL over the 3 seeds
    assert np.allclose(ybars.get_segments()[0], [[7 / 3, 0.1], [7 / 3, 0.5]])  # min..max top-1
    assert np.allclose(xbars.get_segments()[1], [[3.0, 0.9], [3.0, 0.9]])  # one seed: no spread
    texts = [t.get_text() for t in nll.texts]
    assert texts == ["w=0.2", "w=0.8"]
    for ax in (accuracy, kl):  # --no-answers rows: those panels say so instead of plotting nothing
        assert not ax.containers and "not measured" in ax.texts[0].get_text()
    assert fig.axes[0].get_ylabel() == "held-out lens top-1 at L2"


def test_steps_to_readable_heatmap_by_layer_and_weight():
    rows = [_row(0, 0.2, 0, 1, layer=1), _row(1, 0.2, 0, 1, layer=1),  # never readable
            _row(0, 0.8, 1, 1, layer=1, readable=10), _row(1, 0.8, 1, 1, layer=1, readable=30),
            _row(0, 0.2, 1, 1, layer=2, readable=40), _row(1, 0.2, 0, 1, layer=2),  # one seed of two
            _row(0, 0.8, 1, 1, layer=2, readable=5)]
    fig = figures.steps_to_readable_figure(rows)
    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    values = np.ma.asarray(mesh.get_array()).reshape(2, 2)  # rows: layers 1, 2; columns: cls_weight 0.2, 0.8
    assert values.mask.tolist() == [[True, False], [False, False]]
    assert values.data[0, 1] == 20 and values.data[1, 0] == 40 and values.data[1, 1] == 5
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == sorted(["not\nreadable", "20", "40\n1/2 seeds", "5"])
    two = figures.steps_to_readable_figure(rows + [_row(0, 0.2, 1, 1, readable=7, rank=8)])
    assert [ax.get_title() for ax in two.axes if ax.get_label() != "<colorbar>"] == ["lora_rank=8", "lora_rank=16"]


# ---------------------------------------------------------------- the command


@pytest.mark.parametrize("args, message", [
    ([], "error: the sweep grid is empty: give one or more values for at least one of --cls-weight"),
    (["--classifier-layer", "1", "9"], "error: --classifier-layer: layer 9 is outside this model's layers 0..3"),
    (["--cls-weight", "0", "2"], "error: --cls-weight must be in [0, 1], got 2.0"),
    (["--seed", "0", "0"], "error: --seed gives 0 twice"),
])
def test_bad_grid_is_one_sentence_and_exit_2_before_anything_is_written(model_path, tmp_path, capsys, args, message):
    out = tmp_path / "s"
    assert cli.main(["sweep", "-m", model_path, "-o", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not out.exists()


def test_unknown_label_map_is_refused_by_the_parser(model_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sweep", "-m", model_path, "-o", str(tmp_path / "s"), "--label-map", "true", "wrong"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'wrong'" in err and err.count("\n") == 1


def _free_ports(n: int = 2) -> int:
    """A port p with p .. p + n - 1 free on localhost (the ring backend listens on one port per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + n > 65535:
            continue
        try:
            socks = []
            for p in range(start, start + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


@pytest.mark.slow
def test_two_ranks_write_the_rows_of_the_sequential_sweep(swept, model_path, tmp_path):
    """``mlx.launch -n 2``: rank 0 runs cls_weight=0.2, rank 1 cls_weight=0.8, both append to one sweep.jsonl;
    the rows equal the in-process sequential sweep's (seeds, data and evaluation are the same)."""
    launcher = Path(sys.executable).parent / "mlx.launch"
    out = tmp_path / "ranks"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("LAZARUS_NB_DEBUG", None)
    cmd = [str(launcher), "-n", "2", "-p", str(_free_ports(2)), "--python", sys.executable,
           str(ROOT / "tests" / "run" / "sweep_ranks.py"), "sweep", "-m", model_path, "-o", str(out), *TINY_ARGS,
           "--cls-weight", "0.2", "0.8", "--no-answers", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "[rank 0/2] Run 1/2: cls_weight=0.2" in done.stderr and "[rank 1/2] Run 2/2: cls_weight=0.8" in done.stderr
    payload = json.loads(done.stdout)  # rank 0's summary only: one JSON document
    assert payload["ranks"] == 2 and payload["missing"] == [] and payload["ran"] == ["cls_weight=0.2"]
    on_disk = sweep.read_rows(out)
    assert sorted(r["run"] for r in on_disk) == ["cls_weight=0.2", "cls_weight=0.8"]  # one row each
    sequential = {r["run"]: timeless(r) for r in swept[1].rows}
    assert {r["run"]: timeless(r) for r in on_disk} == sequential
    assert [timeless(r) for r in payload["rows"]] == [sequential["cls_weight=0.2"], sequential["cls_weight=0.8"]]
    assert {Path(p).name for p in payload["files"].values()} == {"sweep.jsonl", "trade_off.png",
                                                                 "steps_to_readable.png"}


# ---------------------------------------------------------------- the notebook panel


def test_sweep_panel_shows_the_rows_and_redraws_as_runs_finish(swept, loaded, tmp_path):
    from lazarus_nb.app.sweep_panel import SweepPanel

    panel = SweepPanel(loaded, swept[0], TINY, grid=GRID, answers=False)
    assert panel.fields["cls_weight"].value == "0.2 0.8" and panel.fields["seed"].value == ""
    assert panel.grid().axes == {"cls_weight": (0.2, 0.8)}  # an empty field is not part of the grid
    result = panel.run()  # everything done: the rows come from disk
    assert result.ran == [] and panel.rows == swept[1].rows
    assert "cls_weight=0.2" in panel.table.value and "cls_weight=0.8" in panel.table.value
    assert panel.progress.value == panel.progress.max == 2

    panel = SweepPanel(loaded, tmp_path / "s", TINY, grid={"cls_weight": [0.5]}, answers=False)
    renders = panel.figure.renders
    seen = []
    panel.figure.update = lambda fig=None, update=panel.figure.update: (seen.append(len(panel.rows)), update(fig))
    result = panel.run()
    assert result.ran == ["cls_weight=0.5"] and len(panel.rows) == 1
    assert 1 in seen[:-1]  # redrawn when the run's row arrived, before the sweep returned
    assert panel.figure.renders > renders and panel.progress.value == 1

    panel.fields["cls_weight"].value = "0.5, x"
    assert panel.run() is None and "cls_weight: must be a number, got &#x27;x&#x27;" in panel.status.value


def test_a_grid_of_the_truth_and_a_control_reports_selectivity_from_the_runs_histories(loaded, tmp_path):
    out = tmp_path / "controls"
    result = run_sweep.sweep(out, {"label_map": ["true", "operand", "problem"], "seed": [0, 1]}, TINY, model=loaded,
                             answers=False)
    (comparison,) = result.controls
    assert set(comparison.selectivity) == {"operand", "problem"} and comparison.settings == {}
    assert comparison.n == TINY.snapshot_count == 4

    def top1(label_map: str, seed: int, key: str) -> list[float]:
        run = next(r["run"] for r in result.rows
                   if (r["config"]["label_map"], r["config"]["seed"]) == (label_map, seed))
        history = json.loads((out / run / checkpoint.HISTORY).read_text())  # the file, read back
        i = history["layers"].index(comparison.classifier_layer)
        return [s[key][i] for s in history["snapshots"]]

    for control in ("operand", "problem"):
        for where, key in (("heldout", "top1_acc"), ("train", "train_top1_acc")):
            found = comparison.selectivity[control][where]
            assert [s.step for s in found] == list(range(TINY.steps + 1))
            for s in found:
                expected = [top1("true", seed, key)[s.step] - top1(control, seed, key)[s.step] for seed in (0, 1)]
                assert s.value == pytest.approx(sum(expected) / 2, abs=1e-9)
                assert s.seeds == [0, 1] and s.across is not None and s.within[0] <= s.value <= s.within[1]
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["controls"][0]["selectivity"]["operand"]["train"][0]["step"] == 0
    assert (out / "controls.png").stat().st_size > 10_000 and result.files["controls.png"] == str(out / "controls.png")
    table = "\n".join(report.sweep_summary(result))
    assert "Control tasks at L" in table and "operand" in table and "chance by construction" in table


def test_a_grid_without_a_control_has_no_comparison(swept):
    _, result, _ = swept
    assert result.controls == [] and "controls.png" not in result.files
