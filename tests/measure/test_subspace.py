"""The class-readout subspace and its removal (measure.subspace, LogitLens.readout_directions), against the lens and
the model's own logits on tiny random models of every architecture."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import TINY_CONFIGS

from lazarus_nb.measure import subspace
from lazarus_nb.model.hooks import edited, forward_hidden
from lazarus_nb.model.lens import LogitLens

ARCHS = sorted(TINY_CONFIGS)
IDS = [48859, 2104, 17557, 49099]  # SmolLM2's class tokens (the tiny models share its vocabulary)
TOKENS = mx.array([[5, 100, 2000, 7, 9, 11, 13], [1, 2, 3, 4, 5, 6, 7]])



def unembedding_rows(model, ids) -> np.ndarray:
    """u_w read from the weights as stored (tied: the embedding; untied: lm_head), independent of the lens."""
    head = getattr(model, "language_model", model)
    weight = head.lm_head.weight if "lm_head" in head.children() else head.model.embed_tokens.weight
    return np.array(weight[mx.array(ids)], dtype=np.float64)


@pytest.mark.parametrize("arch", ARCHS)
def test_norm_gain_follows_the_architectures_convention(tiny_by_arch, arch):
    norm = LogitLens(tiny_by_arch[arch].model).trunk.norm
    stored = np.array(norm.weight)
    expected = 1.0 + stored if arch.startswith("gemma") else stored  # Gemma applies 1 + w
    assert np.allclose(np.array(LogitLens(tiny_by_arch[arch].model).norm_gain()), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_readout_directions_give_the_lens_class_logits(tiny_by_arch, arch):
    """d_w . h / rms(h) is the lens's logit of w, for block outputs of the model (the lens has no soft-cap here)."""
    lens = LogitLens(tiny_by_arch[arch].model)
    d = np.array(lens.readout_directions(IDS), dtype=np.float64)
    gain = 1.0 + np.array(lens.trunk.norm.weight) if arch.startswith("gemma") else np.array(lens.trunk.norm.weight)
    assert np.allclose(d, unembedding_rows(lens.model, IDS) * gain, rtol=1e-5, atol=1e-7)
    hidden, _ = forward_hidden(lens.model, TOKENS)
    h = np.array(hidden[2], dtype=np.float64)
    rms = np.sqrt((h * h).mean(axis=-1, keepdims=True) + lens.trunk.norm.eps)
    by_hand = (h / rms) @ d.T
    lens_logits = np.array(lens(hidden[2])[..., mx.array(IDS)], dtype=np.float64)
    assert np.allclose(by_hand, lens_logits, rtol=1e-4, atol=1e-4 * np.abs(lens_logits).max())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("which", subspace.SUBSPACES)
def test_after_the_projection_the_lens_reads_nothing_of_the_class_words(tiny_by_arch, arch, which):
    lens = LogitLens(tiny_by_arch[arch].model)
    d = np.array(lens.readout_directions(IDS), dtype=np.float64)
    basis = subspace.class_basis(d, which)
    hidden, _ = forward_hidden(lens.model, TOKENS)
    h = hidden[2]
    cut = subspace.project_out(basis)(h)
    before = np.array(lens(h)[..., mx.array(IDS)], dtype=np.float64)
    after = np.array(lens(cut)[..., mx.array(IDS)], dtype=np.float64)
    scale = np.abs(before).max()
    if which == "full":  # every class logit's linear part is 0 up to float rounding
        assert np.abs(after).max() < 1e-4 * scale
    else:  # the four class logits are equal: the class-restricted argmax has nothing to read
        assert np.abs(after - after.mean(axis=-1, keepdims=True)).max() < 1e-4 * scale
        assert np.abs(after).max() > 1e-2 * scale  # ... but not zero: the common part is kept
    assert np.abs(before - before.mean(axis=-1, keepdims=True)).max() > 1e-2 * scale  # they differed before
    # only the subspace is removed: the component orthogonal to it is untouched
    q = basis.astype(np.float64)
    hn, cn = np.array(h, dtype=np.float64), np.array(cut, dtype=np.float64)
    assert np.allclose(cn - cn @ q @ q.T, hn - hn @ q @ q.T, atol=1e-4 * np.abs(hn).max())


def test_the_centred_subspace_lies_in_the_full_one():
    rng = np.random.default_rng(3)
    d = rng.standard_normal((4, 32))
    full, centred = subspace.class_basis(d, "full"), subspace.class_basis(d, "centred")
    assert full.shape == (32, 4) and centred.shape == (32, 3)
    assert np.allclose(full @ full.T @ centred, centred)  # inside the full span
    diffs = (d - d.mean(axis=0)).T
    assert np.allclose(centred @ centred.T @ diffs, diffs)  # and it holds every difference
    assert subspace.dimension("full", 4) == 4 and subspace.dimension("centred", 4) == 3
    with pytest.raises(ValueError, match="not linearly independent"):
        subspace.class_basis(np.stack([d[0], d[1], d[0] + d[1], d[2]]), "full")


@pytest.mark.parametrize("dim", [1, 3, 4])
def test_random_subspaces_are_orthonormal_of_the_right_dimension_and_seeded(dim):
    bases = subspace.random_bases(64, dim, draws=5, seed=7)
    assert len(bases) == 5
    for q in bases:
        assert q.shape == (64, dim)
        assert np.allclose(q.T @ q, np.eye(dim), atol=1e-12)
    again = subspace.random_bases(64, dim, draws=5, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(bases, again))
    other = subspace.random_bases(64, dim, draws=5, seed=8)
    assert not np.allclose(bases[0], other[0])
    # distinct draws are different subspaces (their projectors differ)
    assert not np.allclose(bases[0] @ bases[0].T, bases[1] @ bases[1].T)


def test_the_projection_by_hand():
    q = subspace.orthonormal(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 1.0]]))
    h = mx.array([[[2.0, 3.0, 5.0, -1.0]]])
    out = np.array(subspace.project_out(q)(h))[0, 0]
    p = q @ q.T
    assert np.allclose(out, np.array([2.0, 3.0, 5.0, -1.0]) @ (np.eye(4) - p), atol=1e-6)
    assert np.allclose(out @ q, 0.0, atol=1e-6) and out[2] == pytest.approx(5.0)


def test_mean_replace_sets_the_component_to_the_means():
    rng = np.random.default_rng(1)
    q = subspace.random_bases(16, 3, 1, seed=2)[0]
    mean = rng.standard_normal(16)
    h = mx.array(rng.standard_normal((2, 5, 16)).astype(np.float32))
    out = np.array(subspace.mean_replace(q, mean)(h), dtype=np.float64)
    assert np.allclose(out @ q, np.broadcast_to(mean @ q, (2, 5, 3)), atol=1e-5)
    hn = np.array(h, dtype=np.float64)
    assert np.allclose(out - out @ q @ q.T, hn - hn @ q @ q.T, atol=1e-5)


def test_removing_a_subspace_and_adding_it_back_restores_the_logits(tiny_by_arch):
    """Two edits of the same block, the outer removing the component and the inner adding it back: the model's
    logits come back, up to float rounding; without the second edit they do not."""
    model = tiny_by_arch["llama"].model
    lens = LogitLens(model)
    q = subspace.class_basis(np.array(lens.readout_directions(IDS)), "full")
    qm = mx.array(q.astype(np.float32))
    removed: list[mx.array] = []

    def cut(h: mx.array) -> mx.array:
        removed.append((h @ qm) @ qm.T)
        return subspace.project_out(q)(h)

    def restore(h: mx.array) -> mx.array:
        return h + removed[-1]

    plain = np.array(model(TOKENS))
    with edited(model, {1: cut}):
        ablated = np.array(model(TOKENS))
        with edited(model, {1: restore}):
            restored = np.array(model(TOKENS))
    assert np.abs(ablated - plain).max() > 1e-3
    assert np.allclose(restored, plain, rtol=1e-4, atol=1e-4)
