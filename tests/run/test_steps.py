"""The four steps and the demo (workflow.py): a notebook-style call and the CLI give the same JSON for the same
step; verify checks that the adapter from disk reproduces training; the demo writes each step's schema.

Everything runs on the tiny random llama model; the in-process demo trains it for two steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)
from lazarus_nb import LazarusError, files
from lazarus_nb.model.load import load_model
from lazarus_nb.results import demo as demo_result
from lazarus_nb.results.lens import LayerRead, LensReport, PromptRead, TargetRead
from lazarus_nb.results.verify import TrainedMetrics
from lazarus_nb.run import demo as run_demo_mod
from lazarus_nb.run import steps as workflow
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.record import RunRecord

DEMO = TrainConfig(steps=2, num_samples=8, heldout_samples=4, snapshot_every=1, snapshot_size=4)


def cli_json(*args: object) -> dict:
    from lazarus_nb.model.load import home

    env = {**os.environ, "LAZARUS_NB_HOME": str(home())}
    r = subprocess.run([sys.executable, "-m", "lazarus_nb", *map(str, args), "--json"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def as_json(result: object) -> dict:
    """What a step's result looks like in a file (files.write_json's strict JSON)."""
    return json.loads(files.dumps(result))


@pytest.fixture(scope="module")
def base(tiny_path) -> lazarus_nb.LoadedModel:
    """The tiny model without adapters (steps 1 and 2 only read it)."""
    return load_model(str(tiny_path))


@pytest.fixture(scope="module")
def demo(tiny_path, tmp_path_factory) -> demo_result.DemoResult:
    """The whole demo in-process on the tiny model (2 training steps, 8 probe prompts, no greedy answers)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    return run_demo_mod.run_demo(out, str(tiny_path), DEMO, num_prompts=8, answers=False)


# ---------------------------------------------------------------- step 1: one probe schema


def test_probe_step_notebook_call_equals_cli_json(tiny_path, base):
    """Notebook 01's call and `introspect classifier --json` give the same object, numbers included."""
    from_cli = cli_json("introspect", "classifier", "-m", tiny_path, "--prompt-set", "words", "--num-prompts", "16",
                        "--layers", "1,3", "--seed", "2")
    rep = workflow.probe_family(base, "words", 16, seed=2, layers=[1, 3])
    assert as_json(rep) == from_cli
    assert from_cli["prompt_set"] == "words" and from_cli["seed"] == 2 and len(from_cli["layers"]) == 2
    assert sum(map(len, from_cli["classes"].values())) == 16


def test_probe_needs_two_prompts_per_class(base):
    with pytest.raises(LazarusError, match="at least 8 prompts"):
        workflow.probe_family(base, "symbolic", 7)


# ---------------------------------------------------------------- the demo writes each step's schema


def test_demo_files_have_the_steps_schemas(demo, base):
    root = demo.output
    files = {name: json.loads((root / name).read_text())
             for name in ("probe.json", "baseline_lens.json", "dual_reward.json", "verify.json")}
    # step 1: each family is what probe_family returns (so what notebook 01 and the CLI write)
    assert set(files["probe.json"]) == {"symbolic", "words"}
    assert files["probe.json"]["words"] == as_json(workflow.probe_family(base, "words", 8, DEMO.seed))
    # step 2: exactly what notebook 02's call returns on the same settings
    assert files["baseline_lens.json"] == as_json(workflow.baseline_lens(base, DEMO))
    # step 3 and 4: the results' own to_dict, as `introspect dual-reward --json` prints it
    assert files["dual_reward.json"] == as_json(demo.training)
    assert files["verify.json"] == as_json(demo.verified) and files["verify.json"]["matches_training"] is True
    assert {n: str(root / n) for n in files}.items() <= as_json(demo)["files"].items()
    for name in ("probe_accuracy.png", "emergence_heatmap.png", "emergence_curves.png", "loss_curves.png",
                 "lens_before_after.png"):
        assert (root / name).read_bytes()[:4] == b"\x89PNG", name


def test_baseline_lens_reads_canonical_prompts_with_the_class_tokens(demo):
    b = demo.baseline
    assert b.classifier_layer == 2 and b.canonical.targets == b.class_tokens.as_dict()
    assert [p.prompt for p in b.canonical.prompts] == [row.prompt for row in b.heldout.canonical]
    at_layer = [p.at(2) for p in b.canonical.prompts]
    top_is_class = [r.targets[row.expected].rank == 0 for r, row in zip(at_layer, b.heldout.canonical)]
    assert top_is_class == [row.ok for row in b.heldout.canonical]  # the two readouts agree prompt by prompt


def test_lens_report_to_dict_is_the_json_schema():
    """The typed report writes the JSON of ``logit-lens --json`` and ``canonical_lens``: nested plain dicts, each
    top token a [token, probability] list."""
    report = LensReport(
        layers=[1, 3], targets={"add": 7},
        prompts=[PromptRead("2 + 2 = ", [
            LayerRead(1, {"add": TargetRead(7, 0.25, 2)}, [(" 4", 0.5), ("\n", 0.125)]),
            LayerRead(3, {"add": TargetRead(7, float("nan"), 0)}, [(" add", 0.75)]),
        ])],
        summary={"add": {"top_count": 1, "n": 1}})
    d = report.to_dict()
    assert json.dumps(d, allow_nan=True) == json.dumps({
        "layers": [1, 3], "targets": {"add": 7},
        "prompts": [{"prompt": "2 + 2 = ", "layers": [
            {"layer": 1, "targets": {"add": {"id": 7, "prob": 0.25, "rank": 2}}, "top": [[" 4", 0.5], ["\n", 0.125]]},
            {"layer": 3, "targets": {"add": {"id": 7, "prob": float("nan"), "rank": 0}}, "top": [[" add", 0.75]]},
        ]}],
        "summary": {"add": {"top_count": 1, "n": 1}},
    }, allow_nan=True)
    assert type(d["prompts"][0]["layers"][0]["top"][0]) is list  # a list, as the dicts were, not a tuple
    assert as_json(report)["non_finite"] == ["prompts[0].layers[1].targets.add.prob"]
    assert report.prompts[0].at(3).top == [(" add", 0.75)]
    with pytest.raises(ValueError, match="layer 2 was not read"):
        report.prompts[0].at(2)


def test_trained_metrics_round_trip_through_the_run_record():
    """What verify compares is what training saves: config.json's final_* keys read back as the same metrics."""
    m = TrainedMetrics(0.625, 0.5, 0.75)
    assert m.record_values() == {"final_accuracy": 0.625, "final_heldout_top1_accuracy": 0.5,
                                 "final_heldout_restricted_accuracy": 0.75}
    record = RunRecord(model="tiny", train=TrainConfig())
    assert TrainedMetrics.saved(record) is None  # nothing saved yet (e.g. an interrupted run)
    saved = RunRecord.from_dict(record.updated(**m.record_values()).to_dict())
    assert TrainedMetrics.saved(saved) == m and saved.final_accuracy == 0.625
    assert m.matches(TrainedMetrics(0.625, 0.5 + 1e-9, 0.75)) and not m.matches(TrainedMetrics(0.625, 0.5, 0.625))


def test_demo_refuses_a_busy_directory_before_loading_anything(demo, tmp_path):
    with pytest.raises(LazarusError, match="--force"):
        run_demo_mod.run_demo(demo.output, "no-such-model")  # the directory check comes before the model
    (tmp_path / "file").write_text("x")
    with pytest.raises(LazarusError, match="is a file"):
        run_demo_mod.check_demo_dir(tmp_path / "file")


# ---------------------------------------------------------------- step 4: verify reproduces training


def test_verify_compares_with_training_in_memory_or_on_disk(demo, tmp_path):
    ckpt = demo.output / "checkpoint"
    final = demo.training.final
    assert workflow.verify(ckpt, answers=False, trained=final).matches_training is True
    wrong = replace(final, heldout_restricted_accuracy=final.heldout_restricted_accuracy + 0.25)
    assert workflow.verify(ckpt, answers=False, trained=wrong).matches_training is False
    # no result in memory: the results training saved in config.json are the reference
    assert workflow.verify(ckpt, answers=False).matches_training is True
    copy = tmp_path / "copy"
    shutil.copytree(ckpt, copy)
    checkpoint.update_record(copy, final_heldout_top1_accuracy=None)  # e.g. a run interrupted before the end
    assert workflow.verify(copy, answers=False).matches_training is None


# ---------------------------------------------------------------- step 3: the CLI is the workflow


@pytest.mark.slow
def test_dual_reward_cli_equals_notebook_call(tiny_path, tmp_path):
    """`introspect dual-reward --json` and run_dual_reward in-process: the same keys and the same numbers."""
    config = TrainConfig(steps=3, num_samples=16, heldout_samples=8, snapshot_every=1, snapshot_size=4, seed=3)
    from_cli = cli_json("introspect", "dual-reward", "-m", tiny_path, "--steps", 3, "--num-samples", 16,
                        "--heldout-samples", 8, "--snapshot-every", 1, "--snapshot-size", 4, "--seed", 3,
                        "--no-answers", "-o", tmp_path / "cli")
    mine = as_json(workflow.run_dual_reward(load_model(str(tiny_path)), config, output=tmp_path / "nb", answers=False))
    for d in (from_cli, mine):
        d.pop("train_seconds"), d.pop("checkpoint")
    assert from_cli == mine
    assert [h["step"] for h in mine["history"]] == [1, 2, 3]
    saved = [checkpoint.read_record(tmp_path / d) for d in ("cli", "nb")]
    assert replace(saved[0], train_seconds=0, versions={}) == replace(saved[1], train_seconds=0, versions={})


# ---------------------------------------------------------------- verify reads the adapter from disk


@pytest.mark.slow  # trains 25 steps
def test_verify_reproduces_training_from_disk_and_fails_without_the_adapter(tiny_model_dir, tmp_path):
    """Trained until P(class token) at L rises measurably, the adapter loaded from disk reproduces the
    in-memory lens probabilities; with the file's B matrices zeroed (the adapter is a no-op) it does not, so
    this fails if verify ever stopped applying what is on disk."""
    import numpy as np

    path = str(tiny_model_dir("llama"))
    cfg = TrainConfig(steps=25, cls_weight=1.0, learning_rate=1e-2, num_samples=32, heldout_samples=16,
                      snapshot_size=16, snapshot_every=0, batch_size=8, lora_rank=4, classifier_layer=2)
    ckpt = tmp_path / "ckpt"
    result = workflow.run_dual_reward(load_model(path), cfg, output=ckpt, answers=False)
    base, trained = result.baseline.lens.prob, result.final.lens.prob
    assert trained[2] > 5 * base[2], (base[2], trained[2])  # the classifier became more readable at L

    v = workflow.verify(ckpt, answers=False)
    np.testing.assert_allclose(v.adapted.lens.prob, trained, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(v.base.lens.prob, base, rtol=1e-4, atol=1e-9)
    assert v.matches_training is True

    npz = ckpt / checkpoint.NPZ
    with np.load(npz) as z:
        arrays = {k: np.zeros_like(z[k]) if k.endswith("_B") else z[k] for k in z.files}
    np.savez(npz, **arrays)
    zeroed = workflow.verify(ckpt, answers=False)
    np.testing.assert_allclose(zeroed.adapted.lens.prob, base, rtol=1e-4, atol=1e-9)  # B = 0: the base model
    assert not np.allclose(zeroed.adapted.lens.prob, trained, rtol=1e-2)
    assert zeroed.matches_training is False


def test_verify_and_resume_refuse_a_checkpoint_whose_heldout_set_differs(tiny_model_dir, tmp_path):
    path = str(tiny_model_dir("llama"))
    ckpt = tmp_path / "ckpt"
    workflow.run_dual_reward(load_model(path), replace(DEMO, steps=1), output=ckpt, answers=False)
    record = checkpoint.read_record(ckpt)
    assert record.heldout_fingerprint and len(record.heldout_fingerprint) == 64
    record.updated(heldout_fingerprint="0" * 64).write(ckpt / checkpoint.CONFIG)
    with pytest.raises(LazarusError, match="differs from the one it was trained with"):
        workflow.verify(ckpt, answers=False)
    with pytest.raises(LazarusError, match="differs from the one it was trained with"):
        workflow.run_dual_reward(load_model(path), DEMO, output=ckpt, resume=True, answers=False)
    data = json.loads((ckpt / checkpoint.CONFIG).read_text())
    del data["heldout_fingerprint"]  # as an earlier lazarus_nb wrote it
    (ckpt / checkpoint.CONFIG).write_text(json.dumps(data))
    with pytest.raises(LazarusError, match="has no held-out fingerprint"):
        workflow.verify(ckpt, answers=False)
