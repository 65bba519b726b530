"""The reader-only baseline (docs/science.md "Reader-only baseline") on the tiny llama: a zero reader is the plain
logit lens, the model stays bit-identical, the reader learns, the stacked layers train as each would alone, the
targets are the label map's, and bad requests are one sentence."""

from __future__ import annotations

import json
from dataclasses import replace

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)
from lazarus_nb import files
from lazarus_nb.data.labels import operand_classes, target_words
from lazarus_nb.data.prompts import CANONICAL, distinct
from lazarus_nb.data.tokens import prompt_batch, resolve_class_tokens
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.measure.evaluate import last_token_hidden, sample_lens_stats, wilson
from lazarus_nb.measure.reader import apply_reader, init_reader, layer_losses, reader_stats, train_reader
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.run import reader as workflow
from lazarus_nb.run.reader import reader_baseline
from lazarus_nb.train.config import TrainConfig

SMALL = TrainConfig(steps=4, num_samples=16, heldout_samples=8, snapshot_every=2, snapshot_size=8)
"""Four steps on 16 problems: every code path in about a second on the tiny model."""


def weights(model) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


def test_a_zero_reader_is_the_plain_logit_lens_and_at_the_last_layer_the_models_logits(tiny_llama):
    prompts = [s.prompt for s in CANONICAL]
    hidden = mx.array(last_token_hidden(tiny_llama, prompts))  # (L, 8, D)
    layers = list(range(tiny_llama.num_layers))
    zero = init_reader(layers, tiny_llama.hidden_size, rank=4, seed=0)
    assert not np.array_equal(np.array(zero["A"]), 0)  # A is random: only B = 0 and b = 0 make it the identity
    read = apply_reader(zero, hidden)
    assert np.array_equal(np.array(read), np.array(hidden))  # exactly, not approximately
    lens = LogitLens(tiny_llama.model)
    tokens, last = prompt_batch(tiny_llama.tokenizer, prompts, None)
    own = np.array(tiny_llama.model(tokens)[mx.arange(len(prompts)), last])
    np.testing.assert_allclose(np.array(lens(read[-1])), own, rtol=1e-5, atol=1e-5)
    # scored through the reader, the metrics are the plain lens's metrics on the same problems
    class_tokens = resolve_class_tokens(tiny_llama.tokenizer)
    plain = sample_lens_stats(lens, tiny_llama.tokenizer, list(CANONICAL), class_tokens)
    through = reader_stats(lens, zero, hidden, layers, class_tokens.ids, [s.target_index for s in CANONICAL])
    np.testing.assert_allclose(through.prob, plain.prob, rtol=1e-5)
    assert through.top1_acc == plain.top1_acc and through.restricted_acc == plain.restricted_acc


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text"])
def test_hidden_states_stop_at_the_deepest_layer_asked_and_equal_the_full_forwards(tiny_model_dir, arch):
    from lazarus_nb.model.hooks import forward_hidden, hidden_states

    loaded = lazarus_nb.load_model(str(tiny_model_dir(arch)))
    prompts = [s.prompt for s in CANONICAL] + ["1 + 2 = ", "What is 7 times 8? "]  # lengths differ: padding
    tokens, _ = prompt_batch(loaded.tokenizer, prompts, None)
    full, _ = forward_hidden(loaded.model, tokens)
    upto = hidden_states(loaded.model, tokens, 1)
    assert len(upto) == 2
    for a, b in zip(upto, full):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    every = last_token_hidden(loaded, prompts)
    np.testing.assert_allclose(last_token_hidden(loaded, prompts, layers=[2, 0]), every[[2, 0]], rtol=1e-6, atol=1e-6)


def test_training_leaves_every_model_weight_bit_identical(fresh):
    loaded = fresh()
    before = weights(loaded.model)
    reader_baseline(loaded, replace(SMALL, learning_rate=1e-2))
    after = weights(loaded.model)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_training_lowers_the_loss_of_each_layer(tiny_llama):
    train = list(CANONICAL) * 2
    hidden = mx.array(last_token_hidden(tiny_llama, [s.prompt for s in train]))[1:3]
    ids = resolve_class_tokens(tiny_llama.tokenizer).ids
    targets = mx.array([ids[s.target_index] for s in train])
    lens = LogitLens(tiny_llama.model)
    start = init_reader([1, 2], tiny_llama.hidden_size, rank=4, seed=0)
    plan = [np.arange(16)] * 8
    trained, losses = train_reader(lens, start, hidden, targets.tolist(), plan, learning_rate=1e-2)
    before, after = np.array(layer_losses(start, lens, hidden, targets)), np.array(layer_losses(trained, lens, hidden,
                                                                                                targets))
    assert (after < before - 0.5).all(), (before, after)
    assert losses[-1] < losses[0] and len(losses) == 8


def test_layers_trained_in_one_pass_train_as_each_layer_alone(tiny_llama):
    """The stacked design: layer 3's reader trained beside layer 1's equals layer 3's trained alone."""
    train = list(CANONICAL) * 2
    hidden = mx.array(last_token_hidden(tiny_llama, [s.prompt for s in train]))
    ids = resolve_class_tokens(tiny_llama.tokenizer).ids
    targets = [ids[s.target_index] for s in train]
    lens = LogitLens(tiny_llama.model)
    plan = [np.arange(0, 8), np.arange(8, 16), np.array([1, 3, 5, 7, 9, 11, 13, 15])]
    width = tiny_llama.hidden_size
    both, losses_both = train_reader(lens, init_reader([1, 3], width, 4, 0), hidden[mx.array([1, 3])], targets, plan,
                                     learning_rate=1e-2)
    alone, losses_alone = train_reader(lens, init_reader([3], width, 4, 0), hidden[3:4], targets, plan,
                                       learning_rate=1e-2)
    for name in ("A", "B", "b"):
        assert np.abs(np.array(both[name][1])).max() > 0  # trained (B and b start at 0)
        np.testing.assert_allclose(np.array(both[name][1]), np.array(alone[name][0]), rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.array(both["B"][0]), np.array(both["B"][1]))  # the layers did not share parameters
    # each layer's loss is its own: layer 3's beside layer 1's is layer 3's alone
    rows = mx.array(targets)
    np.testing.assert_allclose(np.array(layer_losses(both, lens, hidden[mx.array([1, 3])], rows))[1],
                               np.array(layer_losses(alone, lens, hidden[3:4], rows))[0], rtol=1e-5)


@pytest.fixture(scope="module")
def small_run(tiny_llama):
    """(config, result) of a small seeded run at layers 1 and 3."""
    config = replace(SMALL, learning_rate=1e-2)
    return config, reader_baseline(tiny_llama, config, [1, 3])


def test_results_are_fractions_with_intervals_strict_json_and_reproducible(tiny_llama, small_run):
    config, first = small_run
    again = reader_baseline(tiny_llama, config, [1, 3])
    assert first.layers == [1, 3] and first.params_per_layer == 2 * 16 * tiny_llama.hidden_size + tiny_llama.hidden_size
    for stats in (first.plain, first.heldout, first.train):
        d = stats.to_dict()
        for name in ("top1_acc", "restricted_acc"):
            for p, (lo, hi) in zip(d[name], d[f"{name}_ci"]):
                assert 0 <= lo <= p <= hi <= 1
                assert (lo, hi) == wilson(round(p * stats.n), stats.n)
        assert all(0 <= p <= 1 for p in d["prob"])
    assert first.heldout.n == 8 and first.train.n == len(distinct(config.split()[0]))
    assert [s.step for s in first.snapshots] == [0, 2, 4] and len(first.losses) == 4
    assert len(first.steps_to_readable()) == 2 and len(first.steps_to_readable("train")) == 2

    def reject(constant: str) -> None:
        raise AssertionError(f"non-strict JSON constant {constant}")

    d = json.loads(files.dumps(first), parse_constant=reject)
    assert d["layers"] == [1, 3] and d["trainable_params"] == 2 * d["params_per_layer"]
    assert d["config"]["lora_rank"] == 16 and "cls_weight" not in d["config"]
    timing = ("seconds", "hidden_seconds")
    same = {k: v for k, v in d.items() if k not in timing}
    assert same == {k: v for k, v in json.loads(files.dumps(again)).items() if k not in timing}


def test_the_figure_draws_the_reader_beside_the_plain_lens_and_the_text_has_a_row_per_layer(small_run):
    from matplotlib.container import ErrorbarContainer

    from lazarus_nb.show.figures import reader_figure
    from lazarus_nb.show.reader_text import summary
    from lazarus_nb.train.config import READABLE

    _, result = small_run
    ax = reader_figure(result).axes[0]
    curves = {c.get_label(): c.lines[0] for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert list(curves["trained reader"].get_xdata()) == [1, 3]
    assert list(curves["trained reader"].get_ydata()) == result.heldout.top1_acc
    assert list(curves["plain logit lens (step 0)"].get_ydata()) == result.plain.top1_acc
    assert any(list(line.get_ydata()) == [READABLE, READABLE] for line in ax.get_lines())
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1  # beside the data, not on it
    rows = [line.split() for line in summary(result) if line.split()[:1] and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 3]
    assert [r[2] for r in rows] == [f"{100 * p:.1f}%" for p in result.heldout.top1_acc]  # the reader's column


def test_the_operand_control_trains_and_scores_the_label_maps_targets_on_the_runs_batches(fresh, monkeypatch):
    from lazarus_nb.train.loop import prepare, schedule

    seen = {}
    real_train, real_stats = workflow.train_reader, workflow.reader_stats

    def spy_train(lens, reader, states, targets, plan, *args, **kwargs):
        seen.update(targets=list(targets), plan=[list(b) for b in plan])
        return real_train(lens, reader, states, targets, plan, *args, **kwargs)

    def spy_stats(lens, reader, states, layers, class_ids, labels):
        seen.setdefault("labels", []).append(list(labels))
        return real_stats(lens, reader, states, layers, class_ids, labels)

    monkeypatch.setattr(workflow, "train_reader", spy_train)
    monkeypatch.setattr(workflow, "reader_stats", spy_stats)
    loaded = fresh()
    config = replace(SMALL, label_map="operand", seed=3)
    reader_baseline(loaded, config, [2])
    train, heldout = TrainConfig(num_samples=16, heldout_samples=8, seed=3).split()  # the true map's samples
    table = operand_classes(3)
    ids = resolve_class_tokens(loaded.tokenizer, target_words("operand")).ids
    assert seen["targets"] == [ids[table[s.a]] for s in train]
    assert seen["targets"] != [ids[s.label_index] for s in train]  # not the operation: the control's own targets
    assert seen["labels"][0] == [table[s.a] for s in heldout]  # step 0, the plain lens on the held-out set
    # the batches are the dual-reward trainer's own schedule for the same settings
    assert seen["plan"] == [list(b) for b in schedule(loaded.tokenizer, prepare(loaded, config))]


def test_bad_requests_are_one_sentence(fresh):
    loaded = fresh()
    with pytest.raises(SettingError, match="layer 4 is outside this model's layers 0..3") as exc:
        reader_baseline(loaded, SMALL, [1, 4])
    assert exc.value.field == "layers"
    with pytest.raises(SettingError, match="at least one layer"):
        reader_baseline(loaded, SMALL, [])
    from lazarus_nb.model.lora import LoraConfig, apply_lora

    apply_lora(loaded.model, LoraConfig(rank=2))
    with pytest.raises(LazarusError, match="carries adapters"):
        reader_baseline(loaded, SMALL, [1])
