"""The patching step (``run.patching``) on the tiny llama: an adapter loaded from disk patches exactly as the in-memory
adapted model it was saved from; the base model is the adapted one with its adapters off; the widget's one patch
equals the batched run at that cell; the result is strict JSON, its text and figure are drawn from it."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)
from lazarus_nb.files import dumps
from lazarus_nb.model.load import load_model
from lazarus_nb.model.lora import adapters, lora_arrays, set_lora_arrays
from lazarus_nb.run.patching import activation_patching, patch_pair, patching_pairs
from lazarus_nb.show import patching_text
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.loop import prepare

CONFIG = TrainConfig(steps=1, num_samples=80, heldout_samples=40, classifier_layer=2, seed=1)
PAIRS = 6


@pytest.fixture(scope="module")
def adapted(tiny_path, tmp_path_factory):
    """(the tiny llama with random non-zero adapters in memory, the checkpoint they were saved to)."""
    loaded = load_model(str(tiny_path))
    state = prepare(loaded, CONFIG)
    mx.random.seed(3)
    set_lora_arrays(loaded.model, {k: mx.random.normal(v.shape) * 0.2 for k, v in lora_arrays(loaded.model).items()})
    path = tmp_path_factory.mktemp("patch") / "ckpt"
    checkpoint.save(path, loaded, state)
    return loaded, path


@pytest.fixture(scope="module")
def in_memory(adapted):
    return activation_patching(adapted[0], CONFIG, num_pairs=PAIRS, seed=5)


def test_an_adapter_from_disk_patches_as_the_model_it_was_saved_from(adapted, in_memory, tiny_path):
    loaded = load_model(str(tiny_path))
    from_disk = activation_patching(loaded, num_pairs=PAIRS, seed=5, adapter=adapted[1])
    assert adapters(loaded.model)  # loaded onto the model it was given
    assert from_disk.pairs == in_memory.pairs == patching_pairs(CONFIG, None, PAIRS, 5)  # the run's held-out set
    assert from_disk.classifier_layer == in_memory.classifier_layer == 2
    assert [m.label for m in from_disk.models] == ["base model", "adapted model"]
    for disk, memory in zip(from_disk.models, in_memory.models):
        for d, m in zip(disk.pairs, memory.pairs):
            np.testing.assert_array_equal(d.ld, m.ld)
            np.testing.assert_array_equal(d.first_ld, m.first_ld)
            np.testing.assert_array_equal(d.reads.cls, m.reads.cls)
    # not trivially: the adapters change the patching, and the base run is the model without them
    base, tuned = in_memory.models
    assert max(np.abs(b.ld - t.ld).max() for b, t in zip(base.pairs, tuned.pairs)) > 1e-3
    plain = activation_patching(load_model(str(tiny_path)), CONFIG, num_pairs=PAIRS, seed=5)
    assert [m.label for m in plain.models] == ["base model"] and plain.classifier_layer is None
    for b, p in zip(base.pairs, plain.models[0].pairs):
        np.testing.assert_allclose(b.ld, p.ld, atol=1e-4)


def test_the_widgets_one_patch_is_the_batched_cell(adapted, in_memory):
    loaded = adapted[0]
    pair, ids = in_memory.pairs[0], in_memory.ids[0]
    layer, position = 1, ids.first
    view = patch_pair(loaded, pair, layer, position, CONFIG)
    assert view.label == "adapted model" and view.tokens == in_memory.tokens[0]
    got = in_memory.models[1].pairs[0]
    assert np.log(view.patched.p_source) - np.log(view.patched.p_target) == pytest.approx(got.ld[layer, position],
                                                                                          abs=1e-3)
    assert np.log(view.target.p_source) - np.log(view.target.p_target) == pytest.approx(got.ld_target, abs=1e-3)
    assert np.log(view.source.p_source) - np.log(view.source.p_target) == pytest.approx(got.ld_source, abs=1e-3)
    assert view.patched.cls == got.reads.cls[layer, position]
    assert view.target.cls == got.clean_reads.cls[0] and view.source.cls == got.clean_reads.cls[1]
    assert len(view.patched.top) == 5 and view.patched.answer != ""
    base = patch_pair(loaded, pair, layer, position, CONFIG, base=True)
    assert base.label == "base model"
    assert np.log(base.target.p_source) - np.log(base.target.p_target) == pytest.approx(
        in_memory.models[0].pairs[0].ld_target, abs=1e-3)
    lines = patching_text.pair_patch(view)
    assert len(lines) == 4 and "the operator" in lines[0]


def test_the_result_is_strict_json_with_every_pair(in_memory):
    d = json.loads(dumps(in_memory.to_dict()))
    assert len(d["pairs"]) == PAIRS and set(d["summary"]) == {"base model", "adapted model"}
    first = d["pairs"][0]
    effect = first["models"]["adapted model"]["effect"]
    assert len(effect) == 4 and len(effect[0]) == len(first["tokens"])
    got = in_memory.models[1].pairs[0]
    assert effect[1][first["operator_position"]] == pytest.approx(float(got.effect[1, in_memory.ids[0].first]))
    summary = d["summary"]["adapted model"]
    assert len(summary["effect"]["mean"]) == 4 and len(summary["follows_source"]["mean"]) == 3
    assert summary["excluded_first_token"] == sum(p.shares_first_token for p in in_memory.models[1].pairs)


def test_text_and_figure_come_from_the_result(in_memory):
    from lazarus_nb.show.figures import patching_figure

    lines = patching_text.summary(in_memory)
    text = "\n".join(lines)
    assert "whole answer at the operator: strongest at L" in text and "lens class at L2 follows the source" in text
    labels = patching_text.slot_labels(in_memory)
    assert len(labels) == len(in_memory.slots) and "[OP]" in labels
    fig = patching_figure(in_memory)
    assert len(fig.axes) == 3 * 2 + 3  # three metrics x two models, a colour bar per metric
    assert [ax.get_title() for ax in fig.axes[:2]] == ["base model: whole answer", "adapted model: whole answer"]
