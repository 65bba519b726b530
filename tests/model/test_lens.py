"""Tests of the hidden-state capture and logit lens primitives (lazarus_nb.lens) on tiny random models."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import TINY_CONFIGS
from mlx_lm.models.base import create_attention_mask

from lazarus_nb.model import hooks, lens
from lazarus_nb.model.hooks import capture, forward_hidden
from lazarus_nb.model.lens import LogitLens

ARCHS = sorted(TINY_CONFIGS)
# 2 rows x 7 tokens: longer than gemma3's sliding window (4), so its windowed mask is exercised too
TOKENS = mx.array([[5, 100, 2000, 7, 9, 11, 13], [1, 2, 3, 4, 5, 6, 7]])



@pytest.mark.parametrize("arch", ARCHS)
def test_forward_hidden_shapes(tiny_by_arch, arch):
    lm = tiny_by_arch[arch]
    hidden, final = forward_hidden(lm.model, TOKENS)
    assert isinstance(hidden, list) and len(hidden) == TINY_CONFIGS[arch]["num_hidden_layers"] == lm.num_layers
    for h in hidden:
        assert h.shape == (2, 7, TINY_CONFIGS[arch]["hidden_size"])
    assert final.shape == (2, 7, lm.hidden_size)
    # the layers differ from each other (each entry is a distinct block's output, not one repeated array)
    for a, b in zip(hidden, hidden[1:]):
        assert not mx.allclose(a, b).item()


@pytest.mark.parametrize("arch", ARCHS)
def test_lens_at_last_layer_equals_model_logits(tiny_by_arch, arch):
    lm = tiny_by_arch[arch]
    hidden, final = forward_hidden(lm.model, TOKENS)
    lens_logits = LogitLens(lm.model)(hidden[-1])
    logits = lm.model(TOKENS)
    assert lens_logits.shape == logits.shape == (2, 7, lm.vocab_size)
    assert mx.array_equal(lens_logits, logits).item()
    assert mx.array_equal(LogitLens(lm.model).unembed(final), logits).item()
    # an earlier layer is a different readout (the comparison above can fail)
    assert not mx.allclose(LogitLens(lm.model)(hidden[-2]), logits).item()


@pytest.mark.parametrize("arch", ARCHS)
def test_final_is_the_normed_last_hidden_state(tiny_by_arch, arch):
    lm = tiny_by_arch[arch]
    hidden, final = forward_hidden(lm.model, TOKENS)
    np.testing.assert_allclose(np.array(final), np.array(lm.model.model.norm(hidden[-1])), rtol=1e-6, atol=1e-6)


def test_hidden_states_match_manual_block_run_llama(tiny_by_arch):
    """Independent check of the capture: embed, then each block with mlx-lm's causal mask, by hand."""
    lm = tiny_by_arch["llama"]
    trunk = lm.model.model
    hidden, _ = forward_hidden(lm.model, TOKENS)
    h = trunk.embed_tokens(TOKENS)
    mask = create_attention_mask(h, None)
    for layer, block in enumerate(trunk.layers):
        h = block(h, mask)
        np.testing.assert_allclose(np.array(hidden[layer]), np.array(h), rtol=1e-5, atol=1e-5,
                                   err_msg=f"layer {layer}")
    # and causality: a later token does not change earlier positions' hidden states
    changed = mx.array(np.array(TOKENS)).at[:, -1].add(1)
    hidden2, _ = forward_hidden(lm.model, changed)
    for a, b in zip(hidden, hidden2):
        np.testing.assert_allclose(np.array(a[:, :-1]), np.array(b[:, :-1]), rtol=1e-5, atol=1e-5)
        assert not mx.allclose(a[:, -1], b[:, -1]).item()


def test_single_token_and_batch_rows_are_independent(tiny_by_arch):
    lm = tiny_by_arch["qwen2"]
    hidden_batch, _ = forward_hidden(lm.model, TOKENS)
    hidden_row, _ = forward_hidden(lm.model, TOKENS[1:2])
    for a, b in zip(hidden_batch, hidden_row):
        np.testing.assert_allclose(np.array(a[1:2]), np.array(b), rtol=1e-5, atol=1e-5)
    one, _ = forward_hidden(lm.model, TOKENS[:, :1])
    assert len(one) == lm.num_layers and one[0].shape == (2, 1, lm.hidden_size)


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_restores_block_classes(tiny_by_arch, arch):
    lm = tiny_by_arch[arch]
    layers = lm.model.model.layers
    originals = [type(b) for b in layers]
    with capture(lm.model) as record:
        assert all(type(b) is not cls and isinstance(b, cls) for b, cls in zip(layers, originals))
        lm.model(TOKENS)
        assert len(record) == lm.num_layers
    assert [type(b) for b in layers] == originals
    # after the capture, a forward pass records nothing and nothing is left on the recorder stack
    lm.model(TOKENS)
    assert len(record) == lm.num_layers
    assert hooks._RECORDERS == []


def test_capture_restores_block_classes_when_forward_raises(tiny_by_arch):
    lm = tiny_by_arch["llama"]
    layers = lm.model.model.layers
    originals = [type(b) for b in layers]
    bad = mx.zeros((1, 2, 3), dtype=mx.int32)  # one axis too many: the first block's attention fails
    with pytest.raises(ValueError):
        forward_hidden(lm.model, bad)
    assert [type(b) for b in layers] == originals
    assert hooks._RECORDERS == []
    with pytest.raises(RuntimeError, match="inside"):
        with capture(lm.model):
            raise RuntimeError("raised inside the capture")
    assert [type(b) for b in layers] == originals
    hidden, _ = forward_hidden(lm.model, TOKENS)  # still usable afterwards
    assert len(hidden) == lm.num_layers


def test_nested_captures_restore_the_original_classes(tiny_by_arch):
    lm = tiny_by_arch["llama"]
    layers = lm.model.model.layers
    originals = [type(b) for b in layers]
    with capture(lm.model) as outer:
        lm.model(TOKENS[:, :3])
        with capture(lm.model):
            lm.model(TOKENS)
        lm.model(TOKENS[:, :3])
    assert [type(b) for b in layers] == originals
    assert hooks._RECORDERS == []
    assert all(h.shape[1] == 3 for h in outer)  # the inner forward went to the inner record only


def test_nested_captures_record_each_block_once(tiny_by_arch):
    lm = tiny_by_arch["llama"]
    with capture(lm.model) as outer:
        lm.model(TOKENS[:, :3])
        with capture(lm.model) as inner:
            lm.model(TOKENS)
        lm.model(TOKENS[:, :3])
    assert len(outer) == 2 * lm.num_layers
    assert len(inner) == lm.num_layers
    hidden, _ = forward_hidden(lm.model, TOKENS)
    for a, b in zip(inner, hidden):
        assert mx.array_equal(a, b).item()


@pytest.mark.parametrize("arch", ARCHS)
def test_last_layer_gap_is_zero_where_the_lens_is_exact(tiny_by_arch, arch):
    assert lens.last_layer_gap(tiny_by_arch[arch].model, TOKENS) == 0.0


def test_last_layer_gap_measures_a_logit_scale(tiny_by_arch, monkeypatch):
    """A model that doubles its logits: |2x - x| / |2x| at the largest logit is exactly 1/2."""
    model = tiny_by_arch["qwen2"].model
    real = type(model).__call__
    monkeypatch.setattr(type(model), "__call__", lambda self, *a, **k: 2.0 * real(self, *a, **k))
    assert lens.last_layer_gap(model, TOKENS) == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_an_identity_edit_changes_nothing_and_a_zero_edit_is_what_the_next_block_sees(tiny_by_arch, arch):
    lm = tiny_by_arch[arch]
    originals = [type(b) for b in lm.model.model.layers]
    clean, _ = forward_hidden(lm.model, TOKENS)
    with hooks.edited(lm.model, {1: lambda h: h}):
        same = lm.model(TOKENS)
    assert mx.array_equal(same, lm.model(TOKENS)).item()
    # replacing block 1's output by block 1's own clean output ignores the input: blocks 0..1 need not run
    with hooks.edited(lm.model, {1: lambda h: clean[1]}):
        replaced, _ = forward_hidden(lm.model, TOKENS)
    assert all(mx.array_equal(a, b).item() for a, b in zip(replaced[1:], clean[1:]))
    # an edit at block 0 reaches every later block, and the capture records the edited output
    with hooks.edited(lm.model, {0: lambda h: h * 0.5}):
        halved, _ = forward_hidden(lm.model, TOKENS)
    assert mx.allclose(halved[0], clean[0] * 0.5).item()
    assert not mx.allclose(halved[-1], clean[-1]).item()
    assert [type(b) for b in lm.model.model.layers] == originals and not hooks._EDITS


def test_edits_nest_and_are_checked(tiny_by_arch):
    lm = tiny_by_arch["llama"]
    clean, _ = forward_hidden(lm.model, TOKENS)
    with hooks.edited(lm.model, {0: lambda h: h + 1.0}):
        with hooks.edited(lm.model, {0: lambda h: h * 2.0}):
            both, _ = forward_hidden(lm.model, TOKENS)
        outer_only, _ = forward_hidden(lm.model, TOKENS)
    assert mx.allclose(both[0], (clean[0] + 1.0) * 2.0).item()  # outermost first
    assert mx.allclose(outer_only[0], clean[0] + 1.0).item()
    assert hooks._EDITS == [] and hooks._LAYER == {}
    with pytest.raises(ValueError, match="no block 9"):
        with hooks.edited(lm.model, {9: lambda h: h}):
            pass
