"""The checks of a request before anything runs: the one output-path rule (``files.check_output``) in each case
and in each of its callers, the frozen requests of the CLI's preflight, and a setting's error naming its field.
No model is loaded here: every case is instant."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)
from lazarus_nb import files
from lazarus_nb.app import cli, preflight
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.run.demo import check_demo_dir
from lazarus_nb.run.request import TrainRequest, train_request
from lazarus_nb.show.figures import check_figure_path
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.grid import Grid, check_dir
from lazarus_nb.train.record import RunRecord


@pytest.fixture
def place(tmp_path) -> Path:
    """A directory with a file ``taken.json``, a directory ``full`` holding a file, an empty ``empty``."""
    (tmp_path / "taken.json").write_text("{}")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "empty").mkdir()
    return tmp_path


def refusal(call, *args, **kwargs) -> SettingError:
    with pytest.raises(SettingError) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


# ---------------------------------------------------------------- files.check_output, case by case


def test_a_new_file_may_be_written_in_a_directory_still_to_be_made(place):
    assert files.check_output(place / "new.json") == place / "new.json"
    assert files.check_output(place / "a" / "b" / "new.json") == place / "a" / "b" / "new.json"


def test_an_existing_file_needs_force(place):
    error = refusal(files.check_output, place / "taken.json")
    assert error.field == "output" and str(error) == f"output '{place / 'taken.json'}' already exists; use --force " \
                                                      "to overwrite it"
    assert files.check_output(place / "taken.json", force=True) == place / "taken.json"


def test_a_file_output_that_is_a_directory_is_refused_even_with_force(place):
    assert "is a directory" in str(refusal(files.check_output, place / "empty", force=True))


def test_a_file_where_a_parent_directory_must_be_is_refused(place):
    error = refusal(files.check_output, place / "taken.json" / "sub" / "out.json")
    assert f"'{place / 'taken.json'}' is a file" in str(error)


def test_without_new_parents_the_directory_must_exist(place):
    error = refusal(files.check_output, place / "missing" / "grid.png", new_parents=False)
    assert f"the directory '{place / 'missing'}' does not exist" in str(error)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write into any directory")
def test_a_directory_that_is_not_writable_is_refused(place):
    locked = place / "locked"
    locked.mkdir(mode=0o500)
    assert "is not writable" in str(refusal(files.check_output, locked / "out.json"))
    assert "is not writable" in str(refusal(files.check_output, locked / "sub" / "run", "dir"))


def test_a_directory_output_may_be_new_or_empty(place):
    assert files.check_output(place / "new" / "run", "dir") == place / "new" / "run"
    assert files.check_output(place / "empty", "dir") == place / "empty"


def test_a_directory_output_that_is_a_file_is_refused_even_with_force(place):
    error = refusal(files.check_output, place / "taken.json", "dir", True, field="figure")
    assert error.field == "figure" and "is a file; give a directory" in str(error)


def test_a_directory_that_holds_files_needs_force_or_must_hold_what_the_caller_continues(place):
    assert str(refusal(files.check_output, place / "full", "dir")).endswith("already holds files; use --force to "
                                                                             "overwrite them")
    assert files.check_output(place / "full", "dir", True) == place / "full"
    mine = files.check_output(place / "full", "dir", may_hold=lambda p: (p / "notes.txt").is_file())
    assert mine == place / "full"
    # a caller that cannot overwrite: no --force in the advice
    assert str(refusal(files.check_output, place / "full", "dir", None)).endswith("choose another path")


# ---------------------------------------------------------------- the five callers keep their meaning


def test_check_writable_names_a_checkpoint_and_resume(place):
    ckpt = place / "ckpt"
    ckpt.mkdir()
    (ckpt / checkpoint.CONFIG).write_text("{}")
    text = str(refusal(checkpoint.check_writable, ckpt))
    assert "already holds a checkpoint" in text and "--force" in text and "--resume" in text
    assert checkpoint.check_writable(ckpt, force=True) == ckpt
    assert "already holds files" in str(refusal(checkpoint.check_writable, place / "full"))


def test_check_demo_dir_refuses_a_checkpoint_that_is_a_file(place):
    demo = place / "demo"
    demo.mkdir()
    (demo / "checkpoint").write_text("x")
    assert "--force" in str(refusal(check_demo_dir, demo))
    error = refusal(check_demo_dir, demo, force=True)
    assert f"'{demo / 'checkpoint'}' is a file" in str(error)


def test_sweep_dir_takes_its_own_runs_but_not_other_files(place):
    grid = Grid.of({"seed": [0, 1]})
    assert "not a sweep's; choose another directory" in str(refusal(check_dir, place / "full", grid, 4))
    (place / "full" / "seed=1").mkdir()
    assert check_dir(place / "full", grid, 4) == place / "full"


def test_figure_path_checks_the_format_then_the_path(place):
    assert "must end in .png, .svg or .pdf" in str(refusal(check_figure_path, place / "grid.jpg"))
    (place / "grid.png").write_bytes(b"")
    error = refusal(check_figure_path, place / "grid.png")
    assert error.field == "figure" and "use --force" in str(error)
    check_figure_path(place / "grid.png", force=True)
    assert "does not exist" in str(refusal(check_figure_path, place / "missing" / "grid.png"))


def test_the_cli_names_the_output_option(place, capsys):
    code = cli.main(["introspect", "classifier", "-m", str(place / "no-such-model"), "--output",
                     str(place / "taken.json")])
    assert code == 2
    assert capsys.readouterr().err == f"error: --output '{place / 'taken.json'}' already exists; use --force to " \
                                      "overwrite it\n"


# ---------------------------------------------------------------- the requests


def test_a_train_request_is_frozen_and_checked(place):
    request = train_request(TrainConfig(steps=3), place / "run", num_layers=4)
    assert request == TrainRequest(TrainConfig(steps=3), place / "run", None) and not request.resume
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.output = None  # type: ignore[misc]
    assert refusal(train_request, TrainConfig(classifier_layer=4), num_layers=4).field == "classifier_layer"
    assert refusal(train_request, TrainConfig(batch_size=6), ranks=4).field == "batch_size"
    ckpt = place / "ckpt"
    ckpt.mkdir()
    (ckpt / checkpoint.CONFIG).write_text("{}")
    assert "--resume" in str(refusal(train_request, TrainConfig(), ckpt, num_layers=4))


def test_a_continued_run_keeps_its_record_settings_unchecked_again(place, monkeypatch):
    record = RunRecord(model="m", train=TrainConfig(steps=7, classifier_layer=2))
    record.write(place / "ckpt" / checkpoint.CONFIG)
    monkeypatch.setattr(TrainConfig, "check", lambda *a, **k: pytest.fail("a record's settings are not re-checked"))
    request = train_request(TrainConfig(steps=99), place / "ckpt", record=record)
    assert request.resume and request.config == record.train


def _args(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_unknown_layer_count_is_checked_once_loaded(place, monkeypatch):
    monkeypatch.setattr(preflight, "peek_config", lambda model: {})  # a config.json that does not state it
    request = preflight.classifier(_args("introspect", "classifier", "--layers", "0-5"))
    assert request.layers.known is None
    assert request.layers.ids(6) == [0, 1, 2, 3, 4, 5]
    error = refusal(request.layers.ids, 4)
    assert error.field == "layers" and cli.message(error, _args("introspect", "classifier")).startswith("--layers:")


def test_known_layer_count_is_checked_before_the_load_and_not_after(monkeypatch):
    monkeypatch.setattr(preflight, "peek_config", lambda model: {"num_hidden_layers": 4})
    assert refusal(preflight.classifier, _args("introspect", "classifier", "--layers", "0-5")).field == "layers"
    request = preflight.logit_lens(_args("introspect", "logit-lens", "--layer", "3"))
    assert request.layers.known == (3,)
    monkeypatch.setattr(preflight, "check_layers", lambda *a: pytest.fail("the known layers are checked again"))
    assert request.layers.ids(4) == [3]


def test_the_lens_reads_the_adapter_record_once(place, monkeypatch):
    record = RunRecord(model="m", train=TrainConfig(classifier_layer=1),
                       architecture={"model_type": "llama", "num_layers": 4})
    ckpt = place / "adapter"
    record.write(ckpt / checkpoint.CONFIG)
    reads = []
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda p, *a, **k: (reads.append(p) if p.parent == ckpt else None)
                        or real(p, *a, **k))
    monkeypatch.setattr(preflight, "peek_config", lambda model: {"model_type": "llama", "num_hidden_layers": 4})
    request = preflight.logit_lens(_args("introspect", "logit-lens", "--adapter", str(ckpt)))
    assert reads == [ckpt / checkpoint.CONFIG]
    assert request.model.name == "m" and request.record == record and request.layers.known == (1,)
    # another model is refused with the same record
    monkeypatch.setattr(preflight, "peek_config", lambda model: {"model_type": "qwen2", "num_hidden_layers": 4})
    with pytest.raises(LazarusError, match="another model"):
        preflight.logit_lens(_args("introspect", "logit-lens", "--adapter", str(ckpt)))
    assert json.loads(real(ckpt / checkpoint.CONFIG))["model"] == "m"
