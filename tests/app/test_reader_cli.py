"""``lazarus-nb introspect reader``: its options are the reader's settings from TrainConfig, ``--json`` is strict JSON
and ``-o`` writes the same, and bad input is one sentence with exit code 2 before the model loads."""

from __future__ import annotations

from dataclasses import fields

import pytest
from test_cli import run, strict_json  # the CLI tests' subprocess runner and strict JSON parser (this directory)

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)
from lazarus_nb.app import cli, cli_args
from lazarus_nb.train.config import READER_FIELDS, TrainConfig

READER = ("introspect", "reader")
SMALL = ["--steps", "2", "--num-samples", "16", "--heldout-samples", "8", "--snapshot-every", "1",
         "--snapshot-size", "8"]


def test_reader_options_are_the_readers_train_config_fields():
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices["introspect"]._subparsers._group_actions[0].choices["reader"]
    dests = {a.dest for a in sub._actions}
    assert {f.name for f in fields(TrainConfig)} & dests == set(READER_FIELDS)  # no option that would do nothing
    args = parser.parse_args([*READER, "--steps", "7", "--label-map", "problem", "--lora-rank", "4", "--layers", "2,5"])
    config, given = cli_args.train_config(args)
    assert config == TrainConfig(steps=7, label_map="problem", lora_rank=4)
    assert set(given) == {"steps", "label_map", "lora_rank"} and args.layers.ids(30) == [2, 5]
    assert cli_args.train_config(parser.parse_args(list(READER)))[0] == TrainConfig()


def test_reader_json_is_strict_and_the_output_file_holds_it(tiny_path, tmp_path, capsys):
    out = tmp_path / "reader.json"
    assert cli.main([*READER, "-m", str(tiny_path), *SMALL, "--layers", "1,3", "--json", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    d = strict_json(printed.out)
    assert d == strict_json(out.read_text())
    assert d["layers"] == [1, 3] and d["config"]["steps"] == 2 and len(d["heldout"]["top1_acc"]) == 2
    assert [s["step"] for s in d["snapshots"]] == [0, 1, 2]
    assert "reader top-1 [95% CI]" in printed.err  # the human text goes to stderr with --json


BAD = {
    # name: (args, text expected in the message)
    "layer-out-of-range": (["--layers", "0,9"], "--layers: layer 9 is outside this model's layers 0..3"),
    "layers-malformed": (["--layers", "1-"], "'all', N, N,M or a-b"),
    "unknown-label-map": (["--label-map", "operation"], "invalid choice: 'operation'"),
    "steps-not-a-number": (["--steps", "many"], "--steps: must be an integer, got 'many'"),
    "steps-zero": (["--steps", "0"], "--steps must be a positive integer"),
    "learning-rate-not-a-number": (["--learning-rate", "fast"], "must be a number"),
    "rank-zero": (["--lora-rank", "0"], "--lora-rank must be a positive integer"),
    "option-of-another-command": (["--cls-weight", "0.5"], "unrecognized arguments: --cls-weight"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_sentence_and_exit_2(case, tiny_path, tmp_path):
    extra, expected = BAD[case]
    r = run(*READER, "-m", tiny_path, *extra, "--json", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr and expected in lines[0], r.stderr
    assert r.stdout == "" and list(tmp_path.iterdir()) == []


def test_an_existing_output_file_is_kept_without_force(tiny_path, tmp_path):
    kept = tmp_path / "kept.json"
    kept.write_text('{"keep": true}\n')
    r = run(*READER, "-m", tiny_path, "-o", kept, cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr and kept.read_text() == '{"keep": true}\n'
