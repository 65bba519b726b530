"""Activation patching's batched computation (``measure.patching.patch_pairs``) on the tiny llama: it equals the slow
way (one plain forward per patched (layer, position) through ``hooks.edited``), and it keeps the exact invariants:
before the first differing token the patch changes nothing (and is not even run by default), the first-token effect
at the last layer's last position is 1, and a prompt patched into itself changes nothing."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from lazarus_nb.data.pairs import parse_pair
from lazarus_nb.data.tokens import PairIds, encode_pair, resolve_class_tokens
from lazarus_nb.measure.patch_summary import slots_of, summarise
from lazarus_nb.measure.patching import patch_pairs
from lazarus_nb.model.hooks import edited, forward_hidden
from lazarus_nb.model.lens import LogitLens

TEXTS = ["7 * 8 = |7 + 8 = ", "45 * 12 = |45 - 12 = ", "144 / 12 = |144 - 12 = ", "20 + 4 = |20 / 4 = "]
LAYER = 2  # the classifier layer the tests read the lens class at (the tiny model has 4 blocks)
TOL = 1e-4  # nats: the batched and the plain forward sum attention in another order (float32 rounding)


@pytest.fixture(scope="module")
def setup(tiny_llama):
    ids = [encode_pair(tiny_llama.tokenizer, parse_pair(t)) for t in TEXTS]
    classes = resolve_class_tokens(tiny_llama.tokenizer).ids
    return LogitLens(tiny_llama.model), ids, classes


def naive(lens: LogitLens, pair: PairIds, classes, cells=None) -> dict:
    """The slow way: LD (whole answers, first tokens) and the lens class at LAYER of the target run with block l's
    output at position p replaced by the source run's, one plain forward per (l, p) and answer (``cells``: only
    these (l, p), default all)."""
    model = lens.model
    source, _ = forward_hidden(model, mx.array([pair.source_prompt]))
    size = len(pair.target_prompt)
    layers = len(source)

    def run(prompt, edit=None):
        logp, read = [], None
        for answer in (pair.source_answer, pair.target_answer):
            with edited(model, edit or {}):
                hidden, final = forward_hidden(model, mx.array([prompt + answer[:-1]]))
            logits = lens.unembed(final[0]).astype(mx.float32)
            logits = np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
            scores = [logits[size - 1 + j, t] for j, t in enumerate(answer)]
            logp.append((scores[0], sum(scores)))
            lens_logits = np.array(lens(hidden[LAYER][0, size - 1]))
            read = (int(np.argmax(lens_logits[list(classes)])), int(np.argmax(lens_logits)))
        return logp[0][0] - logp[1][0], logp[0][1] - logp[1][1], read

    out = {"clean_target": run(pair.target_prompt), "clean_source": run(pair.source_prompt), "patched": {}}
    for layer, p in cells or [(layer, p) for layer in range(layers) for p in range(size)]:
        column = (mx.arange(size + 8) == p)[None, :, None]
        state = source[layer][0, p]
        edit = {layer: lambda h, c=column, s=state: mx.where(c[:, : h.shape[1]], s, h)}
        out["patched"][layer, p] = run(pair.target_prompt, edit)
    return out


def test_batched_equals_one_forward_per_patch(setup):
    lens, ids, classes = setup
    batched = patch_pairs(lens, ids, LAYER, classes, every_position=True)
    for pair, got in zip(ids, batched):
        slow = naive(lens, pair, classes)
        assert got.ld_target == pytest.approx(slow["clean_target"][1], abs=TOL)
        assert got.ld_source == pytest.approx(slow["clean_source"][1], abs=TOL)
        assert got.first_ld_source == pytest.approx(slow["clean_source"][0], abs=TOL)
        for (layer, p), (first_ld, ld, (cls, top)) in slow["patched"].items():
            assert got.ld[layer, p] == pytest.approx(ld, abs=TOL), (layer, p)
            assert got.first_ld[layer, p] == pytest.approx(first_ld, abs=TOL), (layer, p)
            if layer <= LAYER:
                assert got.reads.cls[layer, p] == cls and got.reads.top1[layer, p] == (classes[cls] == top)
        # the effect formula, by hand from the slow LDs
        layer, p = 1, pair.first
        ld_t, ld_s = slow["clean_target"][1], slow["clean_source"][1]
        expected = (slow["patched"][layer, p][1] - ld_t) / (ld_s - ld_t)
        assert got.effect[layer, p] == pytest.approx(expected, abs=float(2 * TOL / abs(ld_s - ld_t)))
    # not trivially: patching moves the answer somewhere
    assert max(np.abs(r.effect).max() for r in batched) > 0.1


def test_before_the_first_differing_token_nothing_changes(setup):
    lens, ids, classes = setup
    computed = patch_pairs(lens, ids, LAYER, classes, every_position=True)
    skipped = patch_pairs(lens, ids, LAYER, classes)
    for pair, every, default in zip(ids, computed, skipped):
        # causal attention: the source's block outputs there are the target's, bit for bit (each prompt alone) ...
        source, _ = forward_hidden(lens.model, mx.array([pair.source_prompt]))
        target, _ = forward_hidden(lens.model, mx.array([pair.target_prompt]))
        for s, t in zip(source, target):
            assert np.array_equal(np.array(s[0, : pair.first]), np.array(t[0, : pair.first]))
            assert not np.array_equal(np.array(s[0, pair.first]), np.array(t[0, pair.first]))
        # ... so by default no forward runs there and the effect is exactly 0
        assert not default.computed[:, : pair.first].any() and default.computed[:, pair.first :].all()
        assert (default.effect[:, : pair.first] == 0).all()
        assert (default.first_ld[:, : pair.first] == default.first_ld_target).all()
        # and computed anyway, it is 0 up to float rounding: the patched LD is the clean target's within 1e-4 nats
        assert every.computed.all()
        assert np.abs(every.ld[:, : pair.first] - every.ld_target).max() <= TOL
        assert np.abs(every.first_ld[:, : pair.first] - every.first_ld_target).max() <= TOL
        np.testing.assert_array_equal(every.reads.cls[:, : pair.first], every.clean_reads.cls[0])
        # the other positions agree between the two modes
        np.testing.assert_allclose(every.ld[:, pair.first :], default.ld[:, pair.first :], atol=TOL)


def test_the_last_layers_last_position_gives_the_source_first_token(setup):
    lens, ids, classes = setup
    results = patch_pairs(lens, ids, LAYER, classes)
    assert [r.shares_first_token for r in results] == [False, False, True, False]  # '12' and '132' start alike
    for got in results:
        # exactly the source's first-token distribution: |LD1 - LD1_source| <= 1e-5 nats (float rounding)
        assert abs(got.first_ld[-1, -1] - got.first_ld_source) <= 1e-5
        if not got.shares_first_token:
            gap = abs(got.first_ld_source - got.first_ld_target)
            assert got.first_token[-1, -1] == pytest.approx(1.0, abs=float(1e-5 / gap))
        else:
            assert np.isnan(got.first_token).all()
        # the last block at any other position reaches no scored logit: nothing changes
        assert np.abs(got.ld[-1, :-1] - got.ld_target).max() <= TOL


def test_one_token_answers_without_a_terminator(setup, tiny_llama):
    lens, _, classes = setup
    ids = [encode_pair(tiny_llama.tokenizer, parse_pair(t), "none") for t in ("12 + 4 = |12 / 4 = ", TEXTS[0])]
    assert len(ids[0].target_answer) == 1  # '3', and nothing after it
    got = patch_pairs(lens, ids, LAYER, classes)
    for pair, r in zip(ids, got):
        slow = naive(lens, pair, classes)
        assert r.ld_target == pytest.approx(slow["clean_target"][1], abs=TOL)
        layer, p = 1, pair.first
        assert r.ld[layer, p] == pytest.approx(slow["patched"][layer, p][1], abs=TOL)


def test_a_prompt_patched_into_itself_changes_nothing(setup):
    lens, ids, classes = setup
    own = [PairIds(p.target_prompt, p.target_prompt, p.source_answer, p.target_answer, 0, p.slots) for p in ids]
    for got in patch_pairs(lens, own, LAYER, classes, every_position=True):
        assert got.computed.all()
        assert np.abs(got.ld - got.ld_target).max() <= TOL and np.abs(got.first_ld - got.first_ld_target).max() <= TOL
        assert got.ld_source == pytest.approx(got.ld_target, abs=TOL)  # the source run is the target run
        np.testing.assert_array_equal(got.reads.cls, got.clean_reads.cls[0])


def test_summary_aligns_pairs_by_prompt_part(setup):
    lens, ids, classes = setup
    got = patch_pairs(lens, ids, LAYER, classes)
    slots = slots_of(ids)
    assert slots == [("a", 1), ("a", 2), ("a", 3), ("op", 1), ("space", 1), ("b", 1), ("b", 2), ("equals", 1),
                     ("end", 1)]
    s = summarise(ids, got, slots, source_classes=[ids.index(p) % 4 for p in ids])
    op, last, a3 = slots.index(("op", 1)), slots.index(("end", 1)), slots.index(("a", 3))
    np.testing.assert_allclose(s.effect.mean[:, op], np.mean([r.effect[:, p.first] for r, p in zip(got, ids)], 0))
    np.testing.assert_allclose(s.effect.mean[:, last], np.mean([r.effect[:, -1] for r in got], 0))
    assert (s.effect.n[:, a3] == 1).all() and (s.effect.n[:, op] == 4).all()  # only '144 / 12' has a third digit
    # the t interval of 4 values, by hand
    values = np.array([r.effect[1, p.first] for r, p in zip(got, ids)])
    half = 3.182 * values.std(ddof=1) / 2
    assert (s.effect.lo[1, op], s.effect.hi[1, op]) == pytest.approx((values.mean() - half, values.mean() + half))
    assert s.follows_source.mean.shape == (LAYER + 1, len(slots))


@pytest.mark.slow
def test_the_embedded_model_patches_as_the_slow_way(embedded_dir):
    from lazarus_nb.model.load import load_model

    loaded = load_model(str(embedded_dir))
    lens = LogitLens(loaded.model)
    classes = resolve_class_tokens(loaded.tokenizer).ids
    pair = encode_pair(loaded.tokenizer, parse_pair("45 * 12 = |45 - 12 = "))
    got = patch_pairs(lens, [pair], LAYER, classes)[0]
    last = len(pair.target_prompt) - 1
    cells = [(0, pair.first), (10, pair.first), (20, last), (29, last)]
    slow = naive(lens, pair, classes, cells)
    for cell in cells:  # a 30-block model sums more rounding: within 1e-3 nats
        assert got.ld[cell] == pytest.approx(slow["patched"][cell][1], abs=1e-3), cell
    assert abs(got.first_ld[-1, -1] - got.first_ld_source) <= 1e-4
    assert (got.effect[:, : pair.first] == 0).all()
    # the operator carries the operation early: patching it at block 0 moves the answer most of the way
    assert got.effect[0, pair.first] > 0.5
