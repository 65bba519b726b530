"""The evidence every evaluation carries: intervals on every accuracy, cross-format transfer on word prompts,
collateral damage on general text, the permuted-label control, steps to readable, and the cls_weight 0 / 1
reference runs.

Numbers are checked against independent computations: numpy float64 KL and NLL from the model's own logits,
Wilson intervals from the counts, class-token ids from the tokenizer; everything runs on the tiny llama.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import lazarus_nb
from lazarus_nb import LazarusError, files
from lazarus_nb.data.labels import DESCRIPTIONS, LABEL_MAPS, PERMUTED, target_words
from lazarus_nb.data.prompts import (
    CANONICAL,
    CLASSES,
    WORD_TEMPLATES,
    problem,
    train_heldout_split,
    triple,
    word_forms,
)
from lazarus_nb.data.tokens import make_batch, resolve_class_tokens, resolve_word
from lazarus_nb.measure import collateral
from lazarus_nb.measure.evaluate import layer_accuracy, sample_lens_stats, wilson
from lazarus_nb.model import lora
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.run import steps as workflow
from lazarus_nb.show import text as report
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.history import History, Snapshot
from lazarus_nb.train.loop import prepare
from lazarus_nb.train.record import RunRecord

ROOT = Path(__file__).resolve().parents[2]
RUN = TrainConfig(steps=2, num_samples=16, heldout_samples=8, snapshot_every=1, snapshot_size=4, lora_rank=4)

# the JSON names of the evaluation summary, in both `baseline` and `final` of `introspect dual-reward --json`
SUMMARY_KEYS = {"answer_accuracy", "answer_accuracy_ci", "answer_nll", "heldout_top1_accuracy_ci",
                "words_top1_accuracy", "words_top1_accuracy_ci", "kl_general", "general_perplexity",
                "answer_accuracy_by_class", "answer_accuracy_by_class_ci", "heldout_restricted_accuracy_ci",
                "canonical_accuracy_ci", "words_restricted_accuracy", "words_restricted_accuracy_ci",
                # kept from before
                "canonical_correct", "heldout_restricted_accuracy", "heldout_top1_accuracy", "heldout_prob",
                "canonical"}


@pytest.fixture(scope="module")
def llama(tiny_path):
    return lazarus_nb.load_model(str(tiny_path))


def fresh(tiny_path):
    return lazarus_nb.load_model(str(tiny_path))


# ---------------------------------------------------------------- the data of the controls


def test_permuted_map_is_a_fixed_single_cycle_derangement():
    assert target_words("true") == CLASSES
    words = target_words("permuted")
    assert sorted(words) == sorted(CLASSES) and all(w != c for c, w in zip(CLASSES, words))  # a derangement
    assert words == tuple(PERMUTED[c] for c in CLASSES) and PERMUTED["multiply"] == "divide"
    c, seen = "multiply", []
    while c not in seen:  # one 4-cycle: no two classes merely swap their words
        seen.append(c)
        c = PERMUTED[c]
    assert len(seen) == 4
    with pytest.raises(LazarusError, match="label map"):
        target_words("shuffled")


def test_word_forms_are_the_heldout_problems_in_untrained_templates():
    train, heldout = train_heldout_split(800, 100, seed=0)
    words = word_forms(heldout)
    assert [triple(w) for w in words] == [triple(s) for s in heldout]  # the same problems, paired
    assert all(w.family == "words" and w.answer == s.answer for w, s in zip(words, heldout))
    # training is symbolic only, so no word template is ever trained on, and the problems are disjoint
    assert {s.family for s in train} == {"symbolic"}
    assert not {w.prompt for w in words} & {s.prompt for s in train}
    assert not {problem(triple(w)) for w in words} & {problem(triple(s)) for s in train}
    for c in CLASSES:  # every template of a class is used, equally (25 per class: 7, 6, 6, 6)
        own = [w.prompt for w in words if w.label == c]
        uses = [sum(p == t.format(a=w.a, b=w.b) for p, w in zip(own, [w for w in words if w.label == c]))
                for t in WORD_TEMPLATES[c]]
        assert max(uses) - min(uses) <= 1 and sum(uses) == len(own)


# ---------------------------------------------------------------- the settings


def test_label_map_is_a_checked_saved_setting():
    assert TrainConfig().label_map == "true"
    with pytest.raises(LazarusError, match="label_map must be one of true, permuted"):
        TrainConfig(label_map="random").check()
    record = RunRecord(model="m", train=replace(TrainConfig(label_map="permuted"), classifier_layer=2),
                       steps_to_readable=75)
    data = json.loads(json.dumps(record.to_dict()))
    assert data["label_map"] == "permuted" and data["steps_to_readable"] == 75
    assert RunRecord.from_dict(data) == record
    del data["label_map"], data["steps_to_readable"]  # as an earlier lazarus_nb wrote it: the true map
    old = RunRecord.from_dict(data)
    assert old.train.label_map == "true" and old.steps_to_readable is None


def test_the_memorisation_control_refuses_the_readable_stop(tmp_path, capsys):
    """``stop_when_readable`` reads held-out problems, which have no learnable class under ``problem``: one
    sentence naming both options, exit 2, nothing written."""
    from lazarus_nb.app import cli

    out = tmp_path / "run"
    code = cli.main(["introspect", "dual-reward", "--label-map", "problem", "--stop-when-readable", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err.count("\n") == 0 and "--stop-when-readable cannot be used with the problem label map" in err
    TrainConfig(label_map="operand", stop_when_readable=0.9).check()  # a control with held-out answers may stop


def test_label_map_option_comes_from_the_config():
    from lazarus_nb.app import cli

    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices["introspect"]._subparsers._group_actions[0]
    action = next(a for a in sub.choices["dual-reward"]._actions if a.dest == "label_map")
    assert action.choices == LABEL_MAPS == ("true", "permuted", "operand", "problem")
    assert all(text in action.help for text in DESCRIPTIONS.values())
    assert "multiply->divide" in action.help


# ---------------------------------------------------------------- steps to readable


def test_steps_to_readable_is_the_first_snapshot_at_090_on_the_layer():
    def snap(step: int, top1: list[float]) -> Snapshot:
        return Snapshot(step, [0.0] * 3, [0.0] * 3, top1)

    h = History([0, 1, 2], snapshots=[snap(0, [1.0, 0.0, 0.0]), snap(25, [1.0, 0.5, 0.89]),
                                      snap(50, [1.0, 0.9, 0.95]), snap(75, [1.0, 1.0, 0.5])])
    assert h.steps_to_readable(2) == 50  # not layer 0's step 0, and 0.89 is not 0.9
    assert h.steps_to_readable(1) == 50  # exactly 0.9 counts
    assert h.steps_to_readable(0) == 0
    assert History([0, 1, 2], snapshots=h.snapshots[:2]).steps_to_readable(2) is None
    assert h.steps_to_readable(2, threshold=0.96) is None


# ---------------------------------------------------------------- collateral damage: general text


def test_general_text_ships_with_its_source_and_as_package_data():
    text = collateral.general_text()
    assert text.startswith("Alice was beginning to get very tired") and 4_000 < len(text.encode()) < 8_000
    # every recorded KL and perplexity is measured on exactly these bytes
    sha = "e3449d525de5552ae4f3904c77ab31ca601e4bda14150a213bcc80922cda0bfb"
    assert hashlib.sha256(text.encode()).hexdigest() == sha
    note = (ROOT / "lazarus_nb" / "texts" / "README.md").read_text()
    assert "Lewis Carroll" in note and "public domain" in note and "Gutenberg" in note
    # pyproject's [tool.setuptools.package-data] (no tomllib on Python 3.10): what a wheel carries
    section = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]", 1)[1]
    patterns = ast.literal_eval(section.split("lazarus_nb =", 1)[1].split("#", 1)[0].strip())
    shipped = {p.name for pattern in patterns for p in (ROOT / "lazarus_nb").glob(pattern)}
    assert {collateral.TEXT, "README.md"} <= shipped


def test_windows_cover_the_text_within_the_size(llama):
    ids = llama.tokenizer.encode(collateral.general_text())
    cut = collateral.windows(llama.tokenizer, collateral.general_text(), 100)
    assert [t for w in cut for t in w] == ids[: sum(map(len, cut))] and len(ids) - sum(map(len, cut)) <= 1
    assert all(2 <= len(w) <= 100 for w in cut)



def test_general_text_windows_fit_the_context(tiny_path):
    loaded = lazarus_nb.load_model(str(tiny_path))
    capped = collateral.general_text_metrics(loaded.model, loaded.tokenizer, TEXT, window=256, context_length=16)
    small = collateral.general_text_metrics(loaded.model, loaded.tokenizer, TEXT, window=16)
    wide = collateral.general_text_metrics(loaded.model, loaded.tokenizer, TEXT, window=256)
    assert capped == small != wide  # 16-token windows score fewer positions (one lost per window boundary)


def np_log_softmax(logits: mx.array) -> np.ndarray:
    x = np.array(logits.astype(mx.float32), dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


TEXT = "The rain in Spain stays mainly in the plain. " * 6


def test_kl_and_perplexity_against_numpy_from_the_models_own_logits(tiny_path):
    loaded = fresh(tiny_path)
    tok = loaded.tokenizer
    lora.apply_lora(loaded.model, lora.LoraConfig(rank=4, layers=[1, 2]))
    mx.random.seed(1)
    for m in lora.adapters(loaded.model).values():  # a non-trivial adapter: B random, not zero
        m.lora_b = 0.3 * mx.random.normal(m.lora_b.shape)
    ids = tok.encode(TEXT)
    size = 20
    kl = nll = 0.0
    count = 0
    for i in range(0, len(ids), size):
        w = ids[i : i + size]
        if len(w) < 2:
            continue
        adapted = np_log_softmax(loaded.model(mx.array([w]))[0])
        with lora.disabled(loaded.model):
            base = np_log_softmax(loaded.model(mx.array([w]))[0])
        for t in range(len(w) - 1):  # position t predicts token t + 1
            p = np.exp(base[t])
            kl += float(np.sum(p * (base[t] - adapted[t])))
            nll -= adapted[t, w[t + 1]]
            count += 1
    got = collateral.general_text_metrics(loaded.model, tok, TEXT, window=size)
    assert got.positions == count == len(ids) - -(-len(ids) // size)
    assert got.kl == pytest.approx(kl / count, rel=1e-4) and got.kl > 1e-4
    assert got.perplexity == pytest.approx(np.exp(nll / count), rel=1e-4)
    # the base model's own perplexity, from the same logits with the adapters off
    with lora.disabled(loaded.model):
        base = collateral.general_text_metrics(loaded.model, tok, TEXT, window=size)
    assert base.kl == 0.0 and base.perplexity != pytest.approx(got.perplexity, rel=1e-3)


def test_kl_is_zero_with_adapters_disabled_or_b_zero(tiny_path):
    loaded = fresh(tiny_path)
    plain = collateral.general_text_metrics(loaded.model, loaded.tokenizer, TEXT, window=16)
    assert plain.kl == 0.0  # no adapter at all
    lora.apply_lora(loaded.model, lora.LoraConfig(rank=4))
    zero_b = collateral.general_text_metrics(loaded.model, loaded.tokenizer, TEXT, window=16)
    assert zero_b.kl == 0.0 and zero_b.perplexity == pytest.approx(plain.perplexity, rel=1e-6)
    for m in lora.adapters(loaded.model).values():
        m.lora_b = mx.ones(m.lora_b.shape)
    with lora.disabled(loaded.model):
        off = collateral.general_text_metrics(loaded.model, loaded.tokenizer, TEXT, window=16)
    assert off.kl == 0.0 and off.perplexity == pytest.approx(plain.perplexity, rel=1e-6)
    assert collateral.general_text_metrics(loaded.model, loaded.tokenizer, TEXT, window=16).kl > 0


# ---------------------------------------------------------------- cross-format transfer and intervals


def test_layer_accuracy_on_word_prompts_is_the_lens_at_that_layer(llama):
    _, heldout = train_heldout_split(16, 12, seed=1)
    words = word_forms(heldout)
    ct = resolve_class_tokens(llama.tokenizer)
    got = layer_accuracy(LogitLens(llama.model), llama.tokenizer, words, ct, 2)
    stats = sample_lens_stats(LogitLens(llama.model), llama.tokenizer, words, ct)
    assert (got.n, got.layer) == (12, 2)
    assert got.top1_accuracy == stats.top1_acc[2] and got.restricted_accuracy == stats.restricted_acc[2]
    assert got.prob == pytest.approx(stats.prob[2])


# ---------------------------------------------------------------- the run: JSON, permuted labels, references


@pytest.fixture(scope="module")
def permuted(tiny_path, tmp_path_factory):
    """A 2-step permuted-label run with a checkpoint, greedy answers and general text included."""
    ckpt = tmp_path_factory.mktemp("permuted") / "ckpt"
    result = workflow.run_dual_reward(fresh(tiny_path), replace(RUN, label_map="permuted"), output=ckpt)
    return ckpt, result


def test_every_accuracy_carries_its_interval_in_the_json(permuted):
    _, result = permuted
    d = json.loads(files.dumps(result))
    assert d["label_map"] == "permuted" and d["class_targets"] == PERMUTED
    assert "steps_to_readable" in d and d["steps_to_readable"] == result.steps_to_readable
    for key, ev in (("baseline", result.baseline), ("final", result.final)):
        s = d[key]
        assert set(s) >= SUMMARY_KEYS, SUMMARY_KEYS - set(s)
        n = s["heldout_n"]
        assert n == 8 and s["heldout_top1_accuracy_ci"] == list(wilson(round(s["heldout_top1_accuracy"] * n), n))
        assert s["heldout_restricted_accuracy_ci"] == list(wilson(round(s["heldout_restricted_accuracy"] * n), n))
        assert s["canonical_accuracy_ci"] == list(wilson(s["canonical_correct"], 8))
        a = ev.answers
        assert s["answer_accuracy_ci"] == list(wilson(a.correct, a.total))
        assert s["answer_accuracy_by_class_ci"] == {c: list(wilson(*a.by_class_counts[c])) for c in CLASSES}
        assert s["words_top1_accuracy"] == ev.words.top1_accuracy and ev.words.n == 8
        assert s["words_top1_accuracy_ci"] == list(wilson(round(ev.words.top1_accuracy * 8), 8))
        assert s["general_perplexity"] > 1 and s["kl_general"] >= 0
    for key in ("baseline_lens", "final_lens"):  # the per-layer table: an interval on each layer's accuracy
        lens = d[key]
        assert lens["n"] == 8 and len(lens["top1_acc_ci"]) == len(lens["layers"]) == 4
        assert lens["top1_acc_ci"] == [list(wilson(round(p * 8), 8)) for p in lens["top1_acc"]]
        assert lens["restricted_acc_ci"] == [list(wilson(round(p * 8), 8)) for p in lens["restricted_acc"]]
    assert json.loads(files.dumps(result.final))["lens"]["top1_acc_ci"] == d["final_lens"]["top1_acc_ci"]
    assert d["baseline"]["kl_general"] == 0.0  # the base model is the reference
    assert d["final"]["kl_general"] > 0  # two Adam steps moved the adapters
    # the existing names stay
    assert {"answer_accuracy_by_class", "heldout_top1_accuracy", "heldout_prob", "canonical"} <= set(d["final"])


def test_permuted_labels_train_and_read_another_class_word(permuted, llama):
    ckpt, result = permuted
    tok = llama.tokenizer
    ids = {w: resolve_word(tok, w)[0] for w in CLASSES}
    # the classification target of class c is the token of PERMUTED[c], in training batches ...
    assert result.class_tokens.words == target_words("permuted")
    batch = make_batch(tok, list(CANONICAL), result.class_tokens)
    assert np.array(batch.class_ids).tolist() == [ids[PERMUTED[s.label]] for s in CANONICAL]
    # ... in every readout of the run (the canonical table expects the mapped word) ...
    for ev in (result.baseline, result.final):
        assert [r.expected for r in ev.canonical] == [PERMUTED[s.label] for s in CANONICAL]
    # ... in config.json, and in verify from disk, which reproduces training with the same mapped targets
    record = checkpoint.read_record(ckpt)
    assert record.train.label_map == "permuted" and list(record.class_tokens) == list(target_words("permuted"))
    assert record.class_tokens == {w: ids[w] for w in target_words("permuted")}
    v = workflow.verify(ckpt, answers=False)
    assert v.matches_training is True
    assert [r.expected for r in v.adapted.canonical] == [PERMUTED[s.label] for s in CANONICAL]
    assert "Label map: permuted" in "\n".join(report.training_header(result.state, 4))


def test_steps_to_readable_is_saved_and_printed(permuted):
    ckpt, result = permuted
    assert checkpoint.read_record(ckpt).steps_to_readable == result.steps_to_readable
    text = "\n".join(report.training_summary(result))
    assert "Steps to readable: " in text and "snapshot set" in text
    assert "word prompts, full-vocab top-1 (transfer)" in text and "KL(base || model)" in text
    halves = report.halves(result.baseline, result.final)
    b, f = result.baseline.intervals(), result.final.intervals()
    row = next(line for line in halves if "exact greedy answers" in line)
    assert report.interval(b["answer_accuracy_ci"]) in row and report.interval(f["answer_accuracy_ci"]) in row


@pytest.mark.slow
def test_a_readable_run_reports_its_step(tiny_path):
    """Trained on the classification loss alone, the tiny model's lens becomes readable on the snapshot set
    (at step 35 of 45 with these settings), and steps_to_readable is the first snapshot that says so."""
    cfg = TrainConfig(steps=45, cls_weight=1.0, learning_rate=1e-2, num_samples=32, heldout_samples=16,
                      snapshot_size=16, snapshot_every=5, batch_size=8, lora_rank=4, classifier_layer=2)
    result = workflow.run_dual_reward(fresh(tiny_path), cfg, answers=False)
    top1 = {s.step: s.top1_acc[2] for s in result.state.history.snapshots}
    expected = next((step for step, v in top1.items() if v >= 0.9), None)
    assert expected is not None, top1
    assert result.steps_to_readable == expected and result.to_dict()["steps_to_readable"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_reference_runs_cls_weight_0_and_1_end_to_end(tiny_path, weight):
    """Answer-only (0) and classification-only (1): both train, and both are evaluated on both halves."""
    result = workflow.run_dual_reward(fresh(tiny_path), replace(RUN, cls_weight=weight))
    steps = result.state.history.steps
    assert result.state.status == "complete" and len(steps) == 2
    for s in steps:  # the total is the one weighted loss; the other is still computed and finite
        assert s.total == pytest.approx(s.ans_loss if weight == 0 else s.cls_loss, rel=1e-6)
        assert np.isfinite([s.cls_loss, s.ans_loss]).all() and s.cls_loss > 0
    d = json.loads(files.dumps(result))
    for key in ("baseline", "final"):  # the classification target is still evaluated, the answers too
        assert d[key]["heldout_top1_accuracy"] is not None and d[key]["heldout_top1_accuracy_ci"] is not None
        assert d[key]["answer_accuracy"] is not None and d[key]["kl_general"] is not None
    assert d["config"]["cls_weight"] == weight


def test_no_answers_skips_the_answer_half_but_keeps_the_transfer(tiny_path):
    result = workflow.run_dual_reward(fresh(tiny_path), replace(RUN, steps=1), answers=False)
    f = result.final.summary()
    assert f["answer_accuracy"] is None and f["answer_accuracy_ci"] is None and f["kl_general"] is None
    assert f["words_top1_accuracy"] is not None and f["heldout_top1_accuracy_ci"] is not None
    assert "n/a" in "\n".join(report.halves(result.baseline, result.final))


# ---------------------------------------------------------------- the command line


def _cli(*args: object) -> subprocess.CompletedProcess:
    from lazarus_nb.model.load import home

    env = {**os.environ, "LAZARUS_NB_HOME": str(home())}
    env.pop("LAZARUS_NB_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "lazarus_nb", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_bad_label_map_is_one_line_and_exit_2(tiny_path, tmp_path):
    r = _cli("introspect", "dual-reward", "-m", tiny_path, "--label-map", "shuffled", "-o", tmp_path / "ckpt")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--label-map" in r.stderr
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.slow
def test_cli_permuted_run_json_and_config(tiny_path, tmp_path):
    r = _cli("introspect", "dual-reward", "-m", tiny_path, "--steps", 2, "--num-samples", 16, "--heldout-samples", 8,
             "--snapshot-size", 4, "--label-map", "permuted", "-o", tmp_path / "ckpt", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["label_map"] == "permuted" and d["class_targets"] == PERMUTED and "steps_to_readable" in d
    for key in ("baseline", "final"):
        assert set(d[key]) >= SUMMARY_KEYS
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["label_map"] == "permuted" and "steps_to_readable" in config
    assert "Label map: permuted" in r.stderr and "Steps to readable:" in r.stderr
    assert "Before and after" in r.stderr


def test_prepare_reads_the_label_map(llama, tiny_path):
    state = prepare(fresh(tiny_path), replace(RUN, label_map="permuted"))
    assert state.class_tokens.words == target_words("permuted")
    assert state.class_tokens.as_dict() == resolve_class_tokens(llama.tokenizer).as_dict()  # same ids, reordered
