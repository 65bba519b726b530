"""``lazarus-nb introspect ablate`` and ``introspect steer`` on the tiny llama with an adapter whose B matrices are
random: strict JSON that ``-o`` writes the same, a figure, the workflow's invariants, and bad input as one sentence
with exit code 2 before the model loads (in-process: the CLI's ``main``)."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import pytest
from test_cli import strict_json  # the CLI tests' strict JSON parser (this directory)

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)
from lazarus_nb.app import cli
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.train.config import TrainConfig

ABLATE = ("introspect", "ablate")
STEER = ("introspect", "steer")


@pytest.fixture(scope="module")
def ckpt(tiny_path, tmp_path_factory) -> Path:
    """A checkpoint of the tiny llama with random B matrices (so the adapter changes the model), written in-process."""
    from lazarus_nb.model import lora
    from lazarus_nb.model.load import load_model
    from lazarus_nb.train import checkpoint
    from lazarus_nb.train.loop import prepare

    loaded = load_model(str(tiny_path))
    state = prepare(loaded, TrainConfig(steps=1, num_samples=16, heldout_samples=16))
    mx.random.seed(2)
    for m in lora.adapters(loaded.model).values():
        m.lora_b = 0.5 * mx.random.normal(m.lora_b.shape)
    path = tmp_path_factory.mktemp("causal") / "ckpt"
    checkpoint.save(path, loaded, state)
    return path


def test_ablate_json_is_strict_the_file_holds_it_and_the_figure_is_drawn(ckpt, tiny_path, tmp_path, capsys):
    out, fig = tmp_path / "ablate.json", tmp_path / "ablate.png"
    argv = [*ABLATE, "-m", str(tiny_path), "--adapter", str(ckpt), "--draws", "3", "--problems", "8", "--json",
            "-o", str(out), "--figure", str(fig)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    d = strict_json(printed.out)
    assert d == strict_json(out.read_text()) and fig.stat().st_size > 10_000
    assert (d["layer"], d["classifier_layer"], d["dimension"], d["draws"], d["problems"]) == (2, 2, 4, 3, 8)
    for label in ("base", "adapted"):
        m = d[label]
        assert len(m["random"]) == 3 and m["unablated"]["kl"] == 0.0
        assert m["comparisons"]["answer_nll"]["p_value"] == (m["comparisons"]["answer_nll"]["at_least"] + 1) / 4
        assert m["class_subspace"]["lens_top1"] == 0.0  # nothing of the class words is left to read
    assert d["base"]["lower_lora_off"] is None and d["adapted"]["lower_lora_off"] is not None
    assert all(r["removed"] > 0 and r["kl"] > 0 for m in ("base", "adapted") for r in d[m]["random"])
    assert "Headline (adapted, answer NLL" in printed.err and "Figure written to" in printed.err


def test_steer_json_alpha_zero_is_unsteered_and_both_models_are_steered(ckpt, tiny_path, capsys):
    argv = [*STEER, "-m", str(tiny_path), "--adapter", str(ckpt), "--from-op", "add", "--to-op", "subtract",
            "--alphas", "-1", "0", "1", "--json"]
    assert cli.main(argv) == 0
    d = strict_json(capsys.readouterr().out)
    assert d["alphas"] == [-1.0, 0.0, 1.0] and d["layer"] == d["lens_layer"] == 2
    (pair,) = d["pairs"]
    assert (pair["from_op"], pair["to_op"]) == ("add", "subtract") and set(pair["curves"]) == {"base", "adapted"}
    # every steered prompt is an add problem whose operands also make a subtraction (a > b)
    for prompt in pair["prompts"]:
        a, _, b, _ = prompt.split(" ", 3)
        assert int(a) > int(b)
    base, adapted = pair["curves"]["base"]["points"], pair["curves"]["adapted"]["points"]
    assert base[1]["p_from_by_prompt"] != adapted[1]["p_from_by_prompt"]  # the adapter changes the model
    for point in base + adapted:
        lo, hi = point["lens_to_ci"]
        assert lo <= point["lens_to"] <= hi and point["n"] == len(pair["prompts"])


def test_the_run_layer_refuses_bad_settings_in_one_sentence(ckpt, fresh):
    from lazarus_nb.run.ablation import subspace_ablation
    from lazarus_nb.run.steering import steering

    loaded = fresh()
    with pytest.raises(SettingError, match="draws must be at least 1"):
        subspace_ablation(loaded, ckpt, draws=0)
    with pytest.raises(SettingError, match="problems 40 is more than"):
        subspace_ablation(loaded, ckpt, problems=40)
    with pytest.raises(SettingError, match="layer: layer 7 is outside"):
        subspace_ablation(loaded, ckpt, layer=7)
    with pytest.raises(SettingError, match="alphas must be finite numbers, got nan"):
        steering(loaded, ckpt, alphas=[0.0, float("nan")])
    with pytest.raises(SettingError, match="from_op, to_op must be two different operations"):
        steering(loaded, ckpt, pairs=[("add", "add")])
    with pytest.raises(SettingError, match="from_op must be an operation"):
        steering(loaded, ckpt, pairs=[("power", "add")])
    with pytest.raises(LazarusError, match="no held-out multiply problem"):
        steering(loaded, ckpt, pairs=[("multiply", "divide")])  # 4 held-out multiply problems: none is a division
    from lazarus_nb.model.lora import adapters

    assert not adapters(loaded.model)  # every refusal came before the adapter was loaded


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    printed = capsys.readouterr()
    return code, printed.out, printed.err


BAD = {
    # name: (argv after the command, text expected in the one line)
    "ablate-layer-out-of-range": ([*ABLATE, "--adapter", "{ckpt}", "--layer", "4"],
                                  "--layer: layer 4 is outside this model's layers 0..3"),
    "ablate-draws-zero": ([*ABLATE, "--adapter", "{ckpt}", "--draws", "0"], "--draws must be at least 1, got 0"),
    "ablate-draws-not-a-number": ([*ABLATE, "--adapter", "{ckpt}", "--draws", "many"], "must be an integer"),
    "ablate-problems-not-balanced": ([*ABLATE, "--adapter", "{ckpt}", "--problems", "6"], "multiple of 4"),
    "ablate-no-adapter": ([*ABLATE], "the following arguments are required: --adapter"),
    "ablate-adapter-missing": ([*ABLATE, "--adapter", "{missing}"], "does not exist"),
    "ablate-adapter-other-model": ([*ABLATE, "--adapter", "{ckpt}", "-m", "{qwen}"], "another model"),
    "ablate-unknown-subspace": ([*ABLATE, "--adapter", "{ckpt}", "--subspace", "half"], "invalid choice: 'half'"),
    "ablate-figure-suffix": ([*ABLATE, "--adapter", "{ckpt}", "--figure", "{tmp}/a.jpg"], "must end in .png"),
    "steer-layer-out-of-range": ([*STEER, "--adapter", "{ckpt}", "--layer", "9"],
                                 "--layer: layer 9 is outside this model's layers 0..3"),
    "steer-alpha-nan": ([*STEER, "--adapter", "{ckpt}", "--alphas", "0", "nan"], "--alphas must be finite numbers"),
    "steer-alpha-inf": ([*STEER, "--adapter", "{ckpt}", "--alphas", "1", "inf"], "--alphas must be finite numbers"),
    "steer-alpha-not-a-number": ([*STEER, "--alphas", "big"], "--alphas: must be a number, got 'big'"),
    "steer-unknown-op": ([*STEER, "--from-op", "power"], "argument --from-op: invalid choice: 'power'"),
    "steer-same-op": ([*STEER, "--from-op", "add", "--to-op", "add"],
                      "--from-op, --to-op must be two different operations, got add twice"),
    "steer-default-to-same": ([*STEER, "--from-op", "multiply"], "got multiply twice"),
    "steer-all-pairs-and-one": ([*STEER, "--all-pairs", "--to-op", "add"], "--all-pairs steers every ordered pair"),
    "steer-adapter-other-model": ([*STEER, "--adapter", "{ckpt}", "-m", "{qwen}"], "another model"),
    "steer-unknown-positions": ([*STEER, "--positions", "answer"], "invalid choice: 'answer'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_sentence_and_exit_2(case, ckpt, tiny_path, tiny_model_dir, tmp_path, capsys, monkeypatch):
    args, expected = BAD[case]
    places = {"ckpt": str(ckpt), "missing": str(tmp_path / "nope"), "qwen": str(tiny_model_dir("qwen2")),
              "tmp": str(tmp_path)}
    argv = [a.format(**places) for a in args]
    if "-m" not in argv:
        argv += ["-m", str(tiny_path)]
    loads = []
    monkeypatch.setattr("lazarus_nb.app.commands.load", lambda *a, **k: loads.append(a) or pytest.fail("loaded"))
    code, out, err = _run([*argv, "--json"], capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err and expected in lines[0], err
    assert out == "" and not loads and list(tmp_path.iterdir()) == []


def test_an_existing_output_file_is_kept_without_force(ckpt, tiny_path, tmp_path, capsys):
    kept = tmp_path / "kept.json"
    kept.write_text('{"keep": true}\n')
    code, _, err = _run([*ABLATE, "-m", str(tiny_path), "--adapter", str(ckpt), "-o", str(kept)], capsys)
    assert code == 2 and "--force" in err and json.loads(kept.read_text()) == {"keep": True}


def test_steering_without_an_adapter_steers_the_base_model_on_the_default_split(fresh):
    from lazarus_nb.run.steering import steering

    loaded = fresh()
    result = steering(loaded, alphas=[0.0, 1.0])
    d = result.to_dict()
    assert d["adapter"] is None and d["lens_layer"] == 2 and d["label_map"] == "true"
    (pair,) = d["pairs"]
    assert (pair["from_op"], pair["to_op"]) == ("add", "multiply") and list(pair["curves"]) == ["base"]
    assert pair["n"] == 25  # every held-out add problem of the default split is a valid multiplication
    assert d["train_prompts"]["add"] > 100 and d["train_prompts"]["multiply"] > 100
