"""``lazarus-nb introspect patch``: ``--json`` is strict JSON and ``-o`` writes the same, ``--figure`` draws the
heatmaps, and bad input is one sentence with exit code 2 (the pair rules after the model loads, the rest before)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import run, strict_json  # the CLI tests' subprocess runner and strict JSON parser (this directory)

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)
from lazarus_nb.app import cli
from lazarus_nb.train.config import TrainConfig

PATCH = ("introspect", "patch")


@pytest.fixture(scope="module")
def ckpt(tiny_path, tmp_path_factory) -> Path:
    """A step-0 checkpoint of the tiny llama (adapters attached, B = 0), written in-process."""
    from lazarus_nb.model.load import load_model
    from lazarus_nb.train import checkpoint
    from lazarus_nb.train.loop import prepare

    loaded = load_model(str(tiny_path))
    path = tmp_path_factory.mktemp("patch") / "ckpt"
    checkpoint.save(path, loaded, prepare(loaded, TrainConfig(steps=1, num_samples=40, heldout_samples=40,
                                                              classifier_layer=2)))
    return path


def test_json_output_file_and_figure(tiny_path, ckpt, tmp_path, capsys):
    out, figure = tmp_path / "patch.json", tmp_path / "patch.png"
    assert cli.main([*PATCH, "-m", str(tiny_path), "--adapter", str(ckpt), "--num-pairs", "3", "--seed", "2", "--json",
                     "-o", str(out), "--figure", str(figure)]) == 0
    printed = capsys.readouterr()
    d = strict_json(printed.out)
    assert d == strict_json(out.read_text())
    assert len(d["pairs"]) == 3 and d["classifier_layer"] == 2 and d["adapter"] == str(ckpt)
    assert d["pairs_from"].startswith("held-out problems of the run")
    assert set(d["summary"]) == {"base model", "adapted model"}
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert "whole answer at the operator" in printed.err  # the human text goes to stderr with --json


def test_given_pairs_on_the_base_model(tiny_path, capsys):
    assert cli.main([*PATCH, "-m", str(tiny_path), "--pairs", "7 * 8 = |7 + 8 = ", "--pairs", "45 * 12 = |45 - 12 = ",
                     "--json"]) == 0
    d = strict_json(capsys.readouterr().out)
    assert [p["source"] for p in d["pairs"]] == ["7 * 8 = ", "45 * 12 = "] and d["pairs_from"] == "given"
    assert list(d["summary"]) == ["base model"] and d["classifier_layer"] is None


BAD = {
    # name: (args, text expected in the message)
    "unequal-token-counts": (["--pairs", "7 * 8 = |7 + 18 = "], "must have equal token counts"),
    "more-than-the-operator": (["--pairs", "7 * 8 = |7 + 9 = "], "patching pairs must differ only in the operator"),
    "not-arithmetic": (["--pairs", "7 * 8 = |seven plus eight = "], "must be arithmetic 'a OP b = '"),
    "not-a-pair": (["--pairs", "7 * 8 = "], "two prompts 'SOURCE|TARGET'"),
    "inexact-division": (["--pairs", "7 / 2 = |7 * 2 = "], "division must be exact"),
    "zero-pairs": (["--num-pairs", "0"], "--num-pairs must be between 1 and"),
    "too-many-pairs": (["--num-pairs", "100000"], "--num-pairs must be between 1 and"),
    "pairs-and-count": (["--pairs", "7 * 8 = |7 + 8 = ", "--num-pairs", "2"], "give --pairs or --num-pairs"),
    "adapter-of-another-model": (["-m", "{qwen}", "--adapter", "{ckpt}"], "trained on another model"),
    "figure-format": (["--figure", "patch.jpg"], "--figure 'patch.jpg' must end in .png, .svg or .pdf"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_sentence_and_exit_2(case, tiny_path, tiny_model_dir, ckpt, tmp_path):
    extra, expected = BAD[case]
    extra = [a.format(qwen=tiny_model_dir("qwen2"), ckpt=ckpt) for a in extra]
    model = [] if "-m" in extra else ["-m", tiny_path]
    r = run(*PATCH, *model, *extra, "--json", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert lines and "Traceback" not in r.stderr and expected in lines[-1], r.stderr
    loading = ("Loading model", "Layers:")  # the pair rules need the tokenizer: the load's two lines come first
    assert all(line.strip().startswith(loading) for line in lines[:-1]), r.stderr
    assert r.stdout == "" and list(tmp_path.iterdir()) == []
