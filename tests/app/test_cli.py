"""The command line end to end: every command in a subprocess (``python -m lazarus_nb``) on the tiny random
llama model, plus the whole bad-input list (exit 2, one line on stderr, nothing written or overwritten).

Tests that train carry ``slow`` and share one trained checkpoint (the expensive part). The bad-input cases run
against an untrained (step 0) checkpoint written in-process, so they stay in the fast suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pytest

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)
from lazarus_nb import files
from lazarus_nb.app import cli, cli_args, commands, preflight
from lazarus_nb.errors import SettingError
from lazarus_nb.show import format as fmt
from lazarus_nb.show import text as report
from lazarus_nb.train.config import TrainConfig

TRAIN_ARGS = ["--steps", "3", "--num-samples", "16", "--heldout-samples", "8", "--snapshot-every", "1"]


def _env() -> dict[str, str]:
    from lazarus_nb.model.load import home

    env = dict(os.environ)
    env["LAZARUS_NB_HOME"] = str(home())  # the converted embedded model (the tiny models use its tokenizer)
    env.pop("LAZARUS_NB_DEBUG", None)
    return env


def run(*args: object, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lazarus_nb", *map(str, args)], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=timeout)


def strict_json(text: str) -> dict:
    def reject(constant: str) -> None:
        raise AssertionError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def run_json(*args: object, cwd: Path | None = None) -> tuple[dict, str]:
    r = run(*args, "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return strict_json(r.stdout), r.stderr


@pytest.fixture(scope="module")
def trained(tiny_path, tmp_path_factory) -> tuple[Path, dict, str]:
    """dual-reward on the tiny model, checkpoint written: (checkpoint dir, --json payload, stderr)."""
    ckpt = tmp_path_factory.mktemp("cli") / "ckpt"
    payload, err = run_json("introspect", "dual-reward", "-m", tiny_path, *TRAIN_ARGS, "-o", ckpt)
    return ckpt, payload, err


# ---------------------------------------------------------------- pure helpers (in-process, instant)


def test_layer_spec_parser():
    assert cli_args.parse_layer_spec("all").ids(4) == [0, 1, 2, 3]
    assert cli_args.parse_layer_spec("2").ids(4) == [2]
    assert cli_args.parse_layer_spec("3,1").ids(4) == [1, 3]
    assert cli_args.parse_layer_spec("0-2").ids(4) == [0, 1, 2]
    assert cli_args.parse_layer_spec("0-1, 3").ids(4) == [0, 1, 3]
    for bad in ("", "x", "1-", "-1", "1,,2", "3-1", "1.5"):
        with pytest.raises(cli.LazarusError):
            cli_args.parse_layer_spec(bad)
    with pytest.raises(cli.LazarusError, match=r"0\.\.3"):
        cli_args.parse_layer_spec("2-4").ids(4)
    assert fmt.format_layers([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10"


def test_prompt_splitting_keeps_trailing_spaces():
    assert cli_args.split_prompts("7 * 8 = |12 * 5 = ", "--prompts") == ["7 * 8 = ", "12 * 5 = "]
    assert cli_args.split_prompts("|7 * 8 = ||12 * 5 = | ", "--prompts") == ["7 * 8 = ", "12 * 5 = "]
    classes = cli_args.parse_classes(["multiply:7 * 8 = |12 * 5 = ", "add:23 + 45 = |17 + 38 = |"])
    assert classes == {"multiply": ["7 * 8 = ", "12 * 5 = "], "add": ["23 + 45 = ", "17 + 38 = "]}


def test_json_is_strict():
    import numpy as np

    payload = {"a": float("nan"), "b": [np.float32(0.5), (1, float("inf"))], "c": np.int64(3),
               "d": {"e": np.array([1.0, -np.inf])}}
    out = files.json_clean(payload)
    # the nulls that were not finite are listed (a reader can tell them from "not measured")
    assert out == {"a": None, "b": [0.5, [1, None]], "c": 3, "d": {"e": [1.0, None]},
                   "non_finite": ["a", "b[1][1]", "d.e[1]"]}
    assert strict_json(files.dumps(payload)) == out
    assert files.json_clean({"a": 1.0, "b": None}) == {"a": 1.0, "b": None}  # no key when all is finite
    assert files.json_clean([float("nan")]) == [None]  # not a result: nowhere to say it


@pytest.mark.parametrize("command", [("introspect", "dual-reward"), ("demo", "-o", "x")])
def test_train_options_are_train_config_fields(command):
    """Every TrainConfig field is an option with its help and default; the options give that TrainConfig."""
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command[0]]
    if command[0] == "introspect":
        sub = sub._subparsers._group_actions[0].choices[command[1]]
    actions = {a.dest: a for a in sub._actions}
    for f in fields(TrainConfig):
        action = actions[f.name]
        assert action.option_strings == ["--" + f.name.replace("_", "-")]
        assert action.help.startswith(f.metadata["help"])
        assert action.help.endswith(f"(default: {f.default})") == (f.default is not None)
    args = parser.parse_args([*command, "--steps", "7", "--cls-weight", "0.25", "--lora-layers", "0-1,3"])
    config, given = cli_args.train_config(args)
    assert config == TrainConfig(steps=7, cls_weight=0.25, lora_layers=[0, 1, 3])
    assert set(given) == {"steps", "cls_weight", "lora_layers"}
    assert cli_args.train_config(parser.parse_args(list(command)))[0] == TrainConfig()
    # over another base (the demo's): the options given replace its values, "all" included
    args = parser.parse_args([*command, "--steps", "7", "--lora-layers", "all"])
    base = TrainConfig(stop_when_readable=0.8, lora_layers=[1])
    assert cli_args.train_config(args, base)[0] == TrainConfig(steps=7, stop_when_readable=0.8, lora_layers=None)


def test_demo_runs_the_demo_settings_unless_full(monkeypatch, tmp_path):
    """`demo` trains with DEMO_TRAIN (early stop) and DEMO_PROBE_PROMPTS; --full with the default run; given
    options win in both; the demo prints what it chose."""
    from lazarus_nb.data.prompts import DEMO_PROBE_PROMPTS, PROBE_PROMPTS
    from lazarus_nb.run import demo as workflow
    from lazarus_nb.train.config import DEMO_TRAIN

    seen = []
    monkeypatch.setattr(workflow, "run_demo", lambda out, model, config, num_prompts, **kw: seen.append(
        (config, num_prompts)) or (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr(commands, "interrupted", lambda *a: 130)
    monkeypatch.setattr(preflight, "peek_config", lambda model: {"num_hidden_layers": 30})
    for extra, expected in [((), (DEMO_TRAIN, DEMO_PROBE_PROMPTS)), (("--full",), (TrainConfig(), PROBE_PROMPTS)),
                            (("--full", "--steps", "9", "--num-prompts", "12"), (TrainConfig(steps=9), 12))]:
        assert cli.main(["demo", "-o", str(tmp_path / "d"), *extra]) == 130
        assert seen.pop() == expected
    assert DEMO_TRAIN.stop_when_readable and DEMO_TRAIN.steps == TrainConfig().steps  # an early stop, same run
    lines = "\n".join(report.demo_settings(DEMO_TRAIN, DEMO_PROBE_PROMPTS, True))
    assert f"{DEMO_PROBE_PROMPTS} prompts per family" in lines and "top-1 >= 90.0%" in lines and "--full" in lines


# ---------------------------------------------------------------- a setting's error names the option


def _commands(parser) -> dict[str, object]:
    """Every (sub)command's parser by its path, e.g. "introspect dual-reward"."""
    out = {}
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            out[name] = sub
            if sub._subparsers is not None:
                out.update({f"{name} {k}": v for k, v in _commands(sub).items()})
    return out


def test_every_option_is_spelled_from_its_dest():
    """The rule the error rendering relies on: the long option of every dest is ``cli_args.option(dest)``."""
    for name, sub in _commands(cli.build_parser()).items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert cli_args.option(action.dest) in action.option_strings, (name, action.option_strings)


def test_a_setting_error_names_the_option_on_the_command_line_and_the_field_elsewhere(tiny_path, tmp_path, capsys):
    from dataclasses import replace

    with pytest.raises(SettingError) as info:
        replace(TrainConfig(), cls_weight=1.5).check()
    assert info.value.field == "cls_weight" and str(info.value) == "cls_weight must be in [0, 1], got 1.5"
    args = cli.build_parser().parse_args(["introspect", "dual-reward"])
    assert cli.message(info.value, args) == "--cls-weight must be in [0, 1], got 1.5"
    # a field the command has no option for is named as it is
    assert cli.message(SettingError("LoRA layers", "{field}: layer 9 is out"), args) == "LoRA layers: layer 9 is out"
    # several fields: each named as its option
    grid = SettingError(("cls_weight", "seed"), "give values for one of {field}")
    assert cli.message(grid, args) == "give values for one of --cls-weight, --seed"
    # end to end: one sentence, exit 2, nothing written
    out = tmp_path / "run"
    assert cli.main(["introspect", "dual-reward", "-m", str(tiny_path), "--num-samples", "2", "-o", str(out)]) == 2
    assert capsys.readouterr().err == "error: --num-samples must be at least 4 (one per class), got 2\n"
    assert not out.exists()


# ---------------------------------------------------------------- a request is checked once


class Reads:
    """Counts the real reads of the ``config.json`` files under ``root`` (wraps ``Path.read_text``)."""

    def __init__(self, monkeypatch, root: Path):
        self.count = 0
        real = Path.read_text

        def read_text(path: Path, *args, **kwargs):
            if path.name == "config.json" and Path(root) in path.parents:
                self.count += 1
            return real(path, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", read_text)


def count_calls(monkeypatch, owner: type, name: str) -> list[int]:
    """Counts the calls of a method that still runs (a counting wrapper around the real one)."""
    calls = [0]
    real = getattr(owner, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


SHORT = ["--steps", "1", "--num-samples", "8", "--heldout-samples", "4", "--snapshot-every", "0", "--no-answers"]


def test_dual_reward_checks_the_settings_once(tiny_path, tmp_path, monkeypatch):
    """The preflight checks the settings; the trainer only resolves them for the loaded model (its
    ``for_model``, the one guard of its own) and nothing else checks them again."""
    checks = count_calls(monkeypatch, TrainConfig, "check")
    resolves = count_calls(monkeypatch, TrainConfig, "for_model")
    assert cli.main(["introspect", "dual-reward", "-m", str(tiny_path), *SHORT, "-o", str(tmp_path / "run")]) == 0
    assert resolves == [1] and checks == [2]  # the preflight's, and the one inside for_model


def test_resume_reads_the_checkpoint_record_once(step0_checkpoint, tiny_path, tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(step0_checkpoint, ckpt)
    reads = Reads(monkeypatch, ckpt)
    checks = count_calls(monkeypatch, TrainConfig, "check")
    assert cli.main(["introspect", "dual-reward", "-m", str(tiny_path), "--resume", "-o", str(ckpt), "--no-answers",
                     "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["status"] == "complete" and payload["resumed_from_step"] == 0
    assert reads.count == 1  # the preflight's read; the adapter check, the restore and the held-out check reuse it
    assert checks == [1]  # a resumed run's settings are its record's: only the trainer's for_model checks them


# ---------------------------------------------------------------- info / fetch


def test_info_json():
    info, _ = run_json("info")
    assert set(info["versions"]) >= {"python", "mlx", "mlx-lm", "lazarus_nb"}
    assert info["device"] and info["blas"]["name"] and info["sgemm_gflops"] > 0
    assert any(e["name"] == "smollm2-135m" and e["fetched"] for e in info["embedded"])
    assert info["cache_dir"] == _env()["LAZARUS_NB_HOME"]


def test_fetch_prints_the_model_directory():
    r = run("fetch")
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert (path / "config.json").is_file()


# ---------------------------------------------------------------- dual-reward


@pytest.mark.slow
def test_dual_reward_json_and_checkpoint(trained, tiny_path):
    ckpt, d, err = trained
    # with --json the human report goes to stderr
    assert "Cls Loss" in err and "Accuracy: " in err and f"Checkpoint saved to: {ckpt}" in err
    assert d["model"] == str(tiny_path) and d["num_layers"] == 4 and d["classifier_layer"] == int(0.55 * 4)
    assert set(d["class_tokens"]) == {"multiply", "add", "subtract", "divide"}
    # rank 16 on V (64 -> kv 2*16) and O (64 -> 64) of 4 blocks
    assert d["trainable_params"] == 4 * 16 * ((64 + 32) + (64 + 64))
    assert [h["step"] for h in d["history"]] == [1, 2, 3]
    assert all(set(h) == {"step", "total", "cls_loss", "ans_loss"} for h in d["history"])
    for key in ("baseline", "final"):
        assert set(d[key]) >= {"canonical_correct", "heldout_restricted_accuracy", "heldout_top1_accuracy",
                               "answer_accuracy"}
        assert d[key]["answer_accuracy"] is not None
    assert d["checkpoint"] == str(ckpt) and d["train_seconds"] > 0 and d["status"] == "complete"
    assert len(d["snapshots"]) == 4  # steps 0..3
    for name in ("lora_weights.npz", "adapters.safetensors", "config.json", "adapter_config.json"):
        assert (ckpt / name).is_file(), name
    config = json.loads((ckpt / "config.json").read_text())
    assert config["steps"] == 3 and config["classifier_layer"] == d["classifier_layer"]
    assert config["class_tokens"] == d["class_tokens"]


@pytest.mark.slow
def test_dual_reward_human_output_and_nothing_written_without_output(tiny_path, tmp_path):
    r = run("introspect", "dual-reward", "-m", tiny_path, "--steps", "2", "--num-samples", "8", "--heldout-samples",
            "4", "--log-every", "1", "--no-answers", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for text in ("Loading model:", "Layers: 4", "Classifier layer: L2 (50% depth)", "Class tokens: {'multiply': ",
                 "LoRA rank: 16", "Trainable params: 14,336", "Training samples: 8", "Cls Loss", "Ans Loss",
                 "Prompt        Predicted       Expected    Status", "Accuracy: ", "class-restricted accuracy",
                 "full-vocab top-1 accuracy", "Nothing was saved"):
        assert text in out, text
    assert "[OK]" in out or "[FAIL]" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit() and len(line.split()) == 4]
    assert [row[0] for row in rows] == ["1", "2"]  # --log-every 1
    assert "Checkpoint saved to" not in out
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- logit lens


@pytest.mark.slow
def test_logit_lens_adapter_is_applied(trained, tiny_path, tmp_path):
    ckpt, d, _ = trained
    prompts = "7 * 8 = |23 + 45 = "
    out_file = tmp_path / "lens.json"
    r = run("introspect", "logit-lens", "-m", tiny_path, "--prompts", prompts, "--targets", "multiply",
            "--targets", "add", "--layers", "all", "--output", out_file)
    assert r.returncode == 0, r.stderr
    assert "multiply: " in r.stdout and "/2 prompts have this as top token" in r.stdout
    assert "SUMMARY at L3 (the last layer shown)" in r.stdout
    base = strict_json(out_file.read_text())
    adapted, err = run_json("introspect", "logit-lens", "-m", tiny_path, "--prompts", prompts, "--targets", "multiply",
                            "--targets", "add", "--layers", "all", "--adapter", ckpt)
    assert f"Adapter: {ckpt} (rank 16, layers 0-3" in err
    assert adapted["adapter"]["rank"] == 16 and adapted["adapter"]["layers"] == [0, 1, 2, 3]
    for rep in (base, adapted):
        assert [p["prompt"] for p in rep["prompts"]] == ["7 * 8 = ", "23 + 45 = "]
        assert rep["summary"]["multiply"]["n"] == 2 and set(rep["summary"]) == {"multiply", "add"}
        layer = rep["prompts"][0]["layers"][0]
        assert set(layer) == {"layer", "targets", "top"} and set(layer["targets"]["add"]) == {"id", "prob", "rank"}
        assert len(layer["top"]) == 5 and all(len(t) == 2 for t in layer["top"])
    # same class-token ids as training, different probabilities once the adapter is applied
    assert adapted["targets"] == {w: d["class_tokens"][w] for w in ("multiply", "add")}
    p0 = [t["prob"] for p in base["prompts"] for lay in p["layers"] for t in lay["targets"].values()]
    p1 = [t["prob"] for p in adapted["prompts"] for lay in p["layers"] for t in lay["targets"].values()]
    assert max(abs(a - b) for a, b in zip(p0, p1)) > 1e-7
    # the output file is never overwritten without --force
    before = out_file.read_bytes()
    r = run("introspect", "logit-lens", "-m", tiny_path, "--output", out_file)
    assert r.returncode == 2 and "--force" in r.stderr and out_file.read_bytes() == before


# ---------------------------------------------------------------- classifier


def test_classifier_custom_classes(tiny_path, tmp_path):
    out_file = tmp_path / "probe.json"
    r = run("introspect", "classifier", "-m", tiny_path, "--classes", "multiply:7 * 8 = |12 * 5 = |3 * 9 = ",
            "--classes", "add:23 + 45 = |17 + 38 = |5 + 9 = ", "--layers", "0-2", "--output", out_file)
    assert r.returncode == 0, r.stderr
    assert "<- BEST" in r.stdout and "Best layer: L" in r.stdout and "Selectivity" in r.stdout
    d = strict_json(out_file.read_text())
    assert d["classes"] == {"multiply": ["7 * 8 = ", "12 * 5 = ", "3 * 9 = "],
                            "add": ["23 + 45 = ", "17 + 38 = ", "5 + 9 = "]}
    assert [row["layer"] for row in d["layers"]] == [0, 1, 2]
    assert all(set(row) >= {"layer", "accuracy", "std", "control", "selectivity"} for row in d["layers"])
    assert d["best_layer"] in (0, 1, 2) and 0 <= d["best_accuracy"] <= 1


def test_classifier_generated_words_json(tiny_path):
    d, _ = run_json("introspect", "classifier", "-m", tiny_path, "--prompt-set", "words", "--num-prompts", "16",
                    "--layers", "1,3")
    assert d["prompt_set"] == "words" and list(d["classes"]) == ["multiply", "add", "subtract", "divide"]
    assert sum(len(v) for v in d["classes"].values()) == 16
    assert [row["layer"] for row in d["layers"]] == [1, 3] and d["best_layer"] in (1, 3)


# ---------------------------------------------------------------- demo


@pytest.mark.slow
def test_demo_writes_results_and_figures(tiny_path, tmp_path):
    out = tmp_path / "demo"
    d, err = run_json("demo", "-o", out, "-m", tiny_path, "--steps", "2", "--num-samples", "8", "--heldout-samples",
                      "4", "--num-prompts", "8", "--snapshot-every", "1", "--no-answers")
    for name in ("probe.json", "baseline_lens.json", "dual_reward.json", "verify.json"):
        strict_json((out / name).read_text())
    for name in ("probe_accuracy.png", "lens_before_after.png", "emergence_heatmap.png", "loss_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (out / "checkpoint" / "lora_weights.npz").is_file()
    assert set(d["probe"]) == {"symbolic", "words"} and d["classifier_layer"] == 2
    assert strict_json((out / "verify.json").read_text())["matches_training"] is True
    assert "Step 4/4" in err
    # a second run refuses to overwrite without --force (cheap check: before the model is loaded)
    r = run("demo", "-o", out, "-m", tiny_path, "--steps", "2")
    assert r.returncode == 2 and "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- Ctrl-C and --resume


@pytest.mark.slow
def test_interrupt_keeps_checkpoint_and_resume_completes(tiny_path, tmp_path):
    from lazarus_nb.model.load import load_model
    from lazarus_nb.train import checkpoint

    ckpt = tmp_path / "ckpt"
    # 100 steps, a checkpoint after each: seconds of training left when the signal comes (12 steps could finish
    # between the first checkpoint and the signal on a busy machine)
    args = ["introspect", "dual-reward", "-m", str(tiny_path), "--steps", "100", "--num-samples", "8",
            "--heldout-samples", "4", "--snapshot-every", "0", "--checkpoint-every", "1", "--no-answers",
            "-o", str(ckpt)]
    with open(tmp_path / "out", "w") as fo, open(tmp_path / "err", "w") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "lazarus_nb", *args], stdout=fo, stderr=fe, env=_env())
        deadline = time.time() + 120
        while not (ckpt / "config.json").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    err = (tmp_path / "err").read_text().strip().splitlines()
    assert rc == 130, (err, (tmp_path / "out").read_text()[-1500:])
    assert len(err) == 1 and "Traceback" not in err[0]
    assert f"--resume -o {ckpt}" in err[0]
    config = json.loads((ckpt / "config.json").read_text())
    assert config["status"] == "interrupted" and 1 <= config["steps_completed"] < 100
    loaded = load_model(str(tiny_path))
    assert checkpoint.load_adapter(loaded, ckpt).steps_completed == config["steps_completed"]

    d, _ = run_json("introspect", "dual-reward", "-m", tiny_path, "--resume", "-o", ckpt, "--no-answers")
    assert d["status"] == "complete" and d["resumed_from_step"] == config["steps_completed"]
    assert [h["step"] for h in d["history"]] == list(range(1, 101))
    done = json.loads((ckpt / "config.json").read_text())
    assert done["status"] == "complete" and done["steps_completed"] == 100


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing written


def _snapshot(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def step0_checkpoint(tiny_path, tmp_path_factory) -> Path:
    """A checkpoint at step 0 (adapters initialised, not trained), written in-process in about a second."""
    from lazarus_nb.model.load import load_model
    from lazarus_nb.train import checkpoint
    from lazarus_nb.train.loop import prepare

    loaded = load_model(str(tiny_path))
    path = tmp_path_factory.mktemp("step0") / "ckpt"
    checkpoint.save(path, loaded, prepare(loaded, TrainConfig(steps=1, num_samples=8, heldout_samples=4)))
    return path


@pytest.fixture(scope="module")
def bad_ctx(step0_checkpoint, tiny_path, tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    ckpt = step0_checkpoint
    root = tmp_path_factory.mktemp("bad")
    corrupt = root / "corrupt"
    shutil.copytree(ckpt, corrupt)
    (corrupt / "lora_weights.npz").write_bytes(b"not an npz file")
    a_file = root / "a_file"
    a_file.write_text("precious\n")
    empty = root / "empty"
    empty.mkdir()
    existing = root / "existing.json"
    existing.write_text('{"keep": true}\n')
    damaged = {name: damaged_copy(ckpt, root / name, file, {key: change}) for name, file, key, change in (
        ("nan_npz", "lora_weights.npz", "layer_1_o_B", poison),
        ("nan_safetensors", "adapters.safetensors", "model.layers.1.self_attn.o_proj.lora_b", poison),
        ("narrow_b", "lora_weights.npz", "layer_2_v_B", lambda a: a[:, :-1]),  # (16, 31): kv width is 32
    )}
    return {"tiny": tiny_path, "qwen": tiny_model_dir("qwen2"), "ckpt": ckpt, "corrupt": corrupt, "file": a_file,
            "existing": existing, "missing": root / "missing", "empty": empty, **damaged}


def poison(a):
    a[0, 1] = float("nan")
    return a


def damaged_copy(ckpt: Path, target: Path, file: str, changes: dict[str, Callable]) -> Path:
    """A copy of ``ckpt`` whose ``file`` has each key replaced by ``change(array)`` (numpy in, numpy out)."""
    import mlx.core as mx
    import numpy as np

    shutil.copytree(ckpt, target)
    if file.endswith(".npz"):
        with np.load(target / file) as npz:
            arrays = {k: npz[k] for k in npz.files}
    else:
        arrays = {k: np.array(v) for k, v in mx.load(str(target / file)).items()}
    arrays.update({key: change(arrays[key].copy()) for key, change in changes.items()})
    if file.endswith(".npz"):
        np.savez(target / file, **arrays)
    else:
        mx.save_safetensors(str(target / file), {k: mx.array(v) for k, v in arrays.items()})
    return target


DR = ("introspect", "dual-reward")
LL = ("introspect", "logit-lens")
CL = ("introspect", "classifier")
TWO = ("--classes", "add:1 + 2 = |3 + 4 = ")
LONG = "1234567890" * 60  # 600 tokens (one per digit), over the 512-token CPU cap; the tiny llama states no context

BAD_INPUTS = {
    # name: (args with {placeholders}, text expected in the message, path that must stay untouched)
    "unknown-model": ([*DR, "-m", "./no-such-model"], "unknown model", None),
    "model-dir-without-config": ([*LL, "-m", "{empty}"], "not a model directory", None),
    "classifier-layer-too-high": ([*DR, "-m", "{tiny}", "--classifier-layer", "4"], "0..3", None),
    "cls-weight-above-1": ([*DR, "-m", "{tiny}", "--cls-weight", "1.5"], "[0, 1]", None),
    "steps-zero": ([*DR, "-m", "{tiny}", "--steps", "0"], "positive", None),
    "rank-zero": ([*DR, "-m", "{tiny}", "--lora-rank", "0"], "positive", None),
    "samples-zero": ([*DR, "-m", "{tiny}", "--num-samples", "0"], "at least 4", None),
    "learning-rate-zero": ([*DR, "-m", "{tiny}", "--learning-rate", "0"], "positive", None),
    "learning-rate-negative": ([*DR, "-m", "{tiny}", "--learning-rate", "-1e-3"], "positive", None),
    "cls-weight-negative": ([*DR, "-m", "{tiny}", "--cls-weight", "-0.1"], "[0, 1]", None),
    "batch-size-zero": ([*DR, "-m", "{tiny}", "--batch-size", "0"], "positive", None),
    "heldout-too-many": ([*DR, "-m", "{tiny}", "--heldout-samples", "5000"], "--heldout-samples", None),
    "classes-no-colon": ([*CL, "-m", "{tiny}", "--classes", "multiply 7 * 8 = ", *TWO], "no ':'", None),
    "classes-empty-name": ([*CL, "-m", "{tiny}", "--classes", ":7 * 8 = |1 * 2 = ", *TWO], "empty class name",
                           None),
    "classes-no-prompts": ([*CL, "-m", "{tiny}", "--classes", "multiply:|", *TWO], "no prompts", None),
    "classes-one-class": ([*CL, "-m", "{tiny}", *TWO], "only one class", None),
    "prompts-empty": ([*LL, "-m", "{tiny}", "--prompts", ""], "no prompts", None),
    "target-empty": ([*LL, "-m", "{tiny}", "--targets", "multiply", "--targets", ""], "empty", None),
    "adapter-missing": ([*LL, "-m", "{tiny}", "--adapter", "{missing}"], "does not exist", None),
    "adapter-corrupt": ([*LL, "-m", "{tiny}", "--adapter", "{corrupt}"], "could not load the adapter", "corrupt"),
    "adapter-other-model": ([*LL, "-m", "{qwen}", "--adapter", "{ckpt}"], "another model", "ckpt"),
    "output-existing-checkpoint": ([*DR, "-m", "{tiny}", "--steps", "1", "-o", "{ckpt}"], "--force", "ckpt"),
    "output-is-a-file": ([*DR, "-m", "{tiny}", "--steps", "1", "-o", "{file}"], "is a file", "file"),
    "resume-without-checkpoint": ([*DR, "-m", "{tiny}", "--resume", "-o", "{missing}"], "nothing to resume", None),
    "layers-malformed": ([*CL, "-m", "{tiny}", "--layers", "1-"], "'all', N, N,M or a-b", None),
    "layers-out-of-range": ([*CL, "-m", "{tiny}", "--layers", "0-9"], "0..3", None),
    "layer-out-of-range": ([*LL, "-m", "{tiny}", "--layer", "4"], "0..3", None),
    "json-output-exists": ([*LL, "-m", "{tiny}", "--output", "{existing}"], "--force", "existing"),
    "fetch-unknown": (["fetch", "no-such-model"], "smollm2-135m", None),
    # user text over the limit (tokens.check_prompt_length): refused before any forward pass
    "prompt-over-cpu-cap": ([*LL, "-m", "{tiny}", "--prompts", f"7 * 8 = |{LONG}"],
                            f"prompt 2 of 2 ('12345678901234567890…', {len(LONG)} characters) is {len(LONG)} tokens "
                            "long, over the limit of 512 tokens (the CPU cap per prompt)", None),
    "classes-prompt-over-cpu-cap": ([*CL, "-m", "{tiny}", *TWO, "--classes", f"multiply:7 * 8 = |{LONG}"],
                                    f"prompt 4 of 4 ('12345678901234567890…', {len(LONG)} characters)", None),
    # adapters that are not finite or not of the promised shape (checkpoint.check_arrays)
    "adapter-nan-npz": ([*LL, "-m", "{tiny}", "--adapter", "{nan_npz}"],
                        "lora_weights.npz' cannot be used: 'layer_1_o_B' holds 1 non-finite value", "nan_npz"),
    "adapter-nan-safetensors": ([*LL, "-m", "{tiny}", "--adapter", "{nan_safetensors}"],
                                "adapters.safetensors' cannot be used: 'model.layers.1.self_attn.o_proj.lora_b' "
                                "holds 1 non-finite value", "nan_safetensors"),
    "adapter-b-misshaped": ([*LL, "-m", "{tiny}", "--adapter", "{narrow_b}"],
                            "'layer_2_v_B' has shape (16, 31), but LoRA B of the V projection at rank 16 needs "
                            "(16, 32)", "narrow_b"),
    "resume-nan-npz": ([*DR, "-m", "{tiny}", "--resume", "-o", "{nan_npz}"], "'layer_1_o_B' holds 1 non-finite",
                       "nan_npz"),
}


def test_json_stays_strict_when_the_lens_reads_non_finite_numbers(step0_checkpoint, tiny_path, tmp_path):
    """A finite adapter so large that the forward pass overflows (every B = 1e30; finite, so it loads): the lens
    probabilities are NaN, and the --json text (``Out.result`` prints ``files.dumps``) writes them as null and
    lists where in "non_finite". In-process: the CLI adds nothing to ``files.dumps`` but a model load."""
    import numpy as np

    from lazarus_nb.model.load import load_model
    from lazarus_nb.run.steps import run_lens
    from lazarus_nb.train import checkpoint

    huge = damaged_copy(step0_checkpoint, tmp_path / "huge", "lora_weights.npz",
                        {f"layer_{i}_{t}_B": lambda a: np.full_like(a, 1e30) for i in range(4) for t in "vo"})
    loaded = load_model(str(tiny_path))
    checkpoint.load_adapter(loaded, huge)
    lens = run_lens(loaded, ["7 * 8 = "], ["add"], [2, 3])
    assert np.isnan(lens.prompts[0].layers[1].targets["add"].prob)  # the overflow shows
    d = strict_json(files.dumps(lens))
    assert "prompts[0].layers[1].targets.add.prob" in d["non_finite"]
    for path in d["non_finite"]:  # every listed path is a null in the result
        value = d
        for part in path.replace("[", ".").replace("]", "").split("."):
            value = value[int(part)] if part.isdigit() else value[part]
        assert value is None, path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input(case, bad_ctx, tmp_path):
    args, expected, protected = BAD_INPUTS[case]
    args = [a.format(**bad_ctx) for a in args]
    before = _snapshot(bad_ctx[protected]) if protected else None
    r = run(*args, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "error" in lines[0] and expected in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written next to the run
    if protected:
        assert _snapshot(bad_ctx[protected]) == before, f"{protected} was modified"
