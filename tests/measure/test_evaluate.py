"""The logit lens (lens.py) and evaluation (evaluate.py) against independent computations.

The lens at the last layer must be the model's own logits for every architecture; intermediate layers are
checked against a numpy RMSNorm + unembedding; ranks, probabilities and accuracies against numpy argmax.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import lazarus_nb
from lazarus_nb.data.prompts import CANONICAL, CLASSES, make_sample
from lazarus_nb.data.tokens import ClassTokens, encode_prompt, make_batch, resolve_class_tokens
from lazarus_nb.measure import evaluate as ev
from lazarus_nb.model.hooks import forward_hidden
from lazarus_nb.model.lens import LensReadout, LogitLens, readout
from lazarus_nb.show import text as report

# different lengths, so padding and greedy length groups are exercised
SAMPLES = [*CANONICAL, make_sample(3, "add", 4), make_sample(50, "multiply", 50)]


@pytest.fixture(scope="module")
def llama(tiny_model_dir):
    return lazarus_nb.load_model(str(tiny_model_dir("llama")))


@pytest.fixture(scope="module")
def embedded(embedded_dir):
    return lazarus_nb.load_model(str(embedded_dir))


def padded_prompts(loaded, samples=SAMPLES):
    return make_batch(loaded.tokenizer, samples, resolve_class_tokens(loaded.tokenizer), with_answers=False)


def np_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_lens(loaded, eps: float, h: np.ndarray) -> np.ndarray:
    """unembed(RMSNorm(h)) for the tied tiny llama, in float64 numpy."""
    h = h.astype(np.float64)
    w = np.array(loaded.model.model.norm.weight, dtype=np.float64)
    emb = np.array(loaded.model.model.embed_tokens.weight, dtype=np.float64)
    return (h / np.sqrt((h**2).mean(axis=-1, keepdims=True) + eps) * w) @ emb.T


# ---------------------------------------------------------------- the lens


def assert_last_layer_lens_is_model_logits(loaded, tokens):
    hidden, final = forward_hidden(loaded.model, tokens)
    assert len(hidden) == loaded.num_layers
    lens = LogitLens(loaded.model)
    own = np.array(loaded.model(tokens))
    assert np.array_equal(np.array(lens(hidden[-1])), own)
    assert np.array_equal(np.array(lens.unembed(final)), own)


@pytest.mark.slow
def test_last_layer_lens_equals_model_logits_embedded(embedded):
    """The tiny architectures are checked in test_lens.py; this is the real model on padded prompts."""
    assert_last_layer_lens_is_model_logits(embedded, padded_prompts(embedded).tokens)


def test_readout_matches_numpy(llama, tiny_model_dir):
    eps = json.loads((tiny_model_dir("llama") / "config.json").read_text())["rms_norm_eps"]
    batch = padded_prompts(llama)
    hidden, _ = forward_hidden(llama.model, batch.tokens)
    rows = np.arange(batch.size)
    last = np.array(batch.prompt_last)
    logits = np.stack([np_lens(llama, eps, np.array(h)[rows, last]) for h in hidden])  # (L, B, V)
    # targets: the top-1 token of row 0 at the last layer and of row 1 at layer 1 (so rank 0 occurs), the
    # class tokens, and row 0's least likely token
    targets = list(dict.fromkeys([int(logits[-1, 0].argmax()), int(logits[1, 1].argmax()),
                                  *resolve_class_tokens(llama.tokenizer).ids, int(logits[-1, 0].argmin())]))
    r = readout(LogitLens(llama.model), batch.tokens, batch.prompt_last, targets, top_k=5)
    assert r.layers == list(range(llama.num_layers)) and r.target_ids == targets
    probs, ranks = np.array(r.probs), np.array(r.ranks)
    assert probs.shape == ranks.shape == (llama.num_layers, batch.size, len(targets))

    expected_probs = np_softmax(logits)[:, :, targets]
    assert np.allclose(probs, expected_probs, rtol=1e-4, atol=1e-8)
    tl = logits[:, :, targets]  # (L, B, K)
    above = (logits[:, :, None, :] > tl[..., None] + 1e-4).sum(-1)  # strictly better tokens, with float slack
    above_or_tied = (logits[:, :, None, :] > tl[..., None] - 1e-4).sum(-1) - 1
    assert (above <= ranks).all() and (ranks <= above_or_tied).all()
    is_argmax = logits.argmax(-1)[..., None] == np.array(targets)  # (L, B, K)
    assert ((ranks == 0) == is_argmax).all()
    assert ranks[-1, 0, 0] == 0 and ranks[1, 1, 1] == 0  # the constructed rank-0 cases
    assert ranks[-1, 0, -1] == logits.shape[-1] - 1  # the least likely token is last

    labels = mx.array([0, 1] + [2] * (batch.size - 2))
    full = np.array(r.full_top1(labels))
    assert full.shape == (llama.num_layers, batch.size)
    assert (full == (logits.argmax(-1) == np.array(targets)[np.array(labels)])).all()
    assert full[-1, 0] and full[1, 1]
    assert (np.array(r.restricted_pred()) == tl.argmax(-1)).all()

    top_ids, top_probs = np.array(r.top_ids), np.array(r.top_probs)
    assert top_ids.shape == (llama.num_layers, batch.size, 5)
    fifth = np.sort(logits, axis=-1)[..., -5]
    chosen = np.take_along_axis(logits, top_ids, axis=-1)
    assert (chosen >= fifth[..., None] - 1e-4).all() and (np.diff(chosen, axis=-1) <= 1e-4).all()
    assert np.allclose(top_probs, np.take_along_axis(np_softmax(logits), top_ids, axis=-1), rtol=1e-4, atol=1e-8)

    part = readout(LogitLens(llama.model), batch.tokens, batch.prompt_last, targets, layers=[3, 1], top_k=2)
    assert part.layers == [3, 1]
    assert np.allclose(np.array(part.probs), probs[[3, 1]]) and np.array_equal(np.array(part.ranks), ranks[[3, 1]])


def test_lens_readout_chunks_agree(llama):
    ct = resolve_class_tokens(llama.tokenizer)
    lens = LogitLens(llama.model)
    whole = ev.lens_readout(lens, llama.tokenizer, SAMPLES, ct)
    chunked = ev.lens_readout(lens, llama.tokenizer, SAMPLES, ct, chunk=3)
    # chunks are padded to their own width, so logits differ by float rounding and near-tied ranks may flip
    for key, atol in (("probs", 1e-6), ("top_probs", 1e-6), ("ranks", 3)):
        a, b = np.array(getattr(whole, key)), np.array(getattr(chunked, key))
        assert a.shape == b.shape and np.allclose(a, b, atol=atol, rtol=1e-4), key
    assert np.array(whole.probs).shape == (llama.num_layers, len(SAMPLES), 4)


def test_readout_layer_chunks_and_no_top_k_agree(llama, monkeypatch):
    """Layers go through the unembedding several at a time; one at a time gives the same readout, and
    ``top_k`` 0 (what snapshots use) the same probabilities and ranks with no top tokens."""
    from lazarus_nb.model import lens as lens_mod

    batch = padded_prompts(llama)
    targets = resolve_class_tokens(llama.tokenizer).ids
    lens = LogitLens(llama.model)
    together = readout(lens, batch.tokens, batch.prompt_last, targets, top_k=3)
    no_top = readout(lens, batch.tokens, batch.prompt_last, targets, top_k=0)
    monkeypatch.setattr(lens_mod, "_CHUNK_BYTES", 1)  # one layer per matmul
    alone = readout(lens, batch.tokens, batch.prompt_last, targets, layers=[3, 0, 2], top_k=3)
    assert np.allclose(np.array(alone.probs), np.array(together.probs)[[3, 0, 2]], rtol=1e-6, atol=0)
    assert np.array_equal(np.array(alone.ranks), np.array(together.ranks)[[3, 0, 2]])
    assert np.array_equal(np.array(alone.top_ids), np.array(together.top_ids)[[3, 0, 2]])
    assert np.array_equal(np.array(no_top.probs), np.array(together.probs))
    assert np.array_equal(np.array(no_top.ranks), np.array(together.ranks))
    assert np.array(no_top.top_ids).shape == np.array(no_top.top_probs).shape == (llama.num_layers, batch.size, 0)


def reference_lens_stats(loaded, samples, ct) -> dict:
    """What a snapshot holds, computed layer by layer from the model's own lens logits in float64 numpy: the
    way ``sample_lens_stats`` computed it before it was batched over layers and moved to numpy."""
    batch = make_batch(loaded.tokenizer, samples, ct, with_answers=False)
    hidden, _ = forward_hidden(loaded.model, batch.tokens)
    rows, labels = np.arange(batch.size), np.array([s.target_index for s in samples])
    lens = LogitLens(loaded.model)
    out: dict = {"prob": [], "restricted_acc": [], "top1_acc": [], "median_rank": []}
    for h in hidden:
        logits = np.array(lens(h[mx.arange(batch.size), batch.prompt_last]), dtype=np.float64)  # (B, V)
        own = logits[rows, np.array(ct.ids)[labels]]
        p = np_softmax(logits)[rows, np.array(ct.ids)[labels]]
        rank = (logits > own[:, None]).sum(-1)
        out["prob"].append(p.mean())
        out["restricted_acc"].append((logits[:, list(ct.ids)].argmax(-1) == labels).mean())
        out["top1_acc"].append((rank == 0).mean())
        out["median_rank"].append(float(np.median(rank)))
    return out


def assert_stats_match(stats, ref) -> None:
    assert stats.prob == pytest.approx(ref["prob"], rel=1e-5, abs=0)
    for key in ("restricted_acc", "top1_acc", "median_rank"):
        if hasattr(stats, key):  # a Snapshot holds no median rank
            assert getattr(stats, key) == pytest.approx(ref[key], abs=1e-12), key


def top1_class_tokens(loaded, samples) -> ClassTokens:
    """Class tokens chosen so the random tiny model's lens reads some prompts right at the last layer (otherwise
    every top-1 accuracy would be 0 and comparing them would prove nothing)."""
    batch = make_batch(loaded.tokenizer, samples, resolve_class_tokens(loaded.tokenizer), with_answers=False)
    hidden, _ = forward_hidden(loaded.model, batch.tokens)
    logits = np.array(LogitLens(loaded.model)(hidden[-1][mx.arange(batch.size), batch.prompt_last]))
    first = {}
    for s, row in zip(samples, logits):
        first.setdefault(s.label, int(row.argmax()))
    ids = tuple(first.get(c, 1000 + k) for k, c in enumerate(CLASSES))
    return ClassTokens(CLASSES, ids, tuple(loaded.tokenizer.decode([i]) for i in ids), (True,) * 4)


def test_sample_lens_stats_equal_the_per_layer_computation(llama):
    ct = top1_class_tokens(llama, SAMPLES)
    stats = ev.sample_lens_stats(LogitLens(llama.model), llama.tokenizer, SAMPLES, ct)
    ref = reference_lens_stats(llama, SAMPLES, ct)
    assert max(ref["top1_acc"]) > 0 and max(ref["restricted_acc"]) > 0  # the comparison can fail
    assert_stats_match(stats, ref)


def test_snapshots_match_the_reference_and_leave_training_unchanged(tiny_model_dir):
    """Every snapshot of a short run (held-out set and its training twin) equals the per-layer computation at that
    step's adapters, and taking
    snapshots at every step changes no step of the run (the History of the run without them)."""
    from lazarus_nb.app.profiles import SMOKE_TRAIN
    from lazarus_nb.train.callbacks import TrainingCallback
    from lazarus_nb.train.loop import prepare, snapshot_set, train, train_snapshot_set

    path = str(tiny_model_dir("llama"))
    loaded = lazarus_nb.load_model(path)
    ct = top1_class_tokens(loaded, snapshot_set(prepare(loaded, SMOKE_TRAIN)))

    def run(every: int, check: bool):
        loaded = lazarus_nb.load_model(path)
        state = prepare(loaded, replace(SMOKE_TRAIN, snapshot_every=every), ct)
        checked = []

        class Check(TrainingCallback):
            def on_snapshot(self, snapshot, seconds, state):
                if check:
                    ref = reference_lens_stats(loaded, snapshot_set(state), state.class_tokens)
                    assert_stats_match(snapshot, ref)
                    twin = reference_lens_stats(loaded, train_snapshot_set(state), state.class_tokens)
                    assert snapshot.train_prob == pytest.approx(twin["prob"], rel=1e-5, abs=0)
                    assert snapshot.train_top1_acc == pytest.approx(twin["top1_acc"], abs=1e-12)
                    assert snapshot.train_restricted_acc == pytest.approx(twin["restricted_acc"], abs=1e-12)
                    checked.append((state.step, max(ref["top1_acc"])))

        train(loaded, state, callback=Check())
        return state.history, checked

    every, checked = run(1, check=True)
    ends, _ = run(0, check=False)
    assert [step for step, _ in checked] == list(range(SMOKE_TRAIN.steps + 1))
    assert max(top1 for _, top1 in checked) > 0  # the top-1 comparison can fail
    assert [s.step for s in ends.snapshots] == [0, SMOKE_TRAIN.steps]
    assert every.snapshots[0] == ends.snapshots[0] and every.snapshots[-1] == ends.snapshots[-1]
    assert [(s.total, s.cls_loss, s.ans_loss) for s in every.steps] == [(s.total, s.cls_loss, s.ans_loss)
                                                                       for s in ends.steps]


# ---------------------------------------------------------------- metrics


def test_lens_stats_by_hand():
    # 2 layers, 3 prompts (labels 0, 1, 2), 4 targets
    probs = np.array([
        [[0.5, 0.1, 0.1, 0.1], [0.3, 0.2, 0.1, 0.0], [0.0, 0.1, 0.6, 0.2]],
        [[0.1, 0.2, 0.3, 0.0], [0.0, 0.9, 0.0, 0.0], [0.2, 0.2, 0.1, 0.3]],
    ], dtype=np.float32)
    ranks = np.array([
        [[0, 5, 6, 7], [1, 3, 9, 99], [50, 9, 0, 4]],
        [[4, 3, 2, 60], [70, 0, 80, 90], [2, 3, 8, 1]],
    ], dtype=np.int32)
    r = LensReadout([5, 9], [11, 12, 13, 14], mx.array(probs), mx.array(ranks), mx.zeros((2, 3, 1), mx.int32),
                    mx.zeros((2, 3, 1)))
    s = ev.lens_stats(r, [0, 1, 2])
    assert s.layers == [5, 9]
    assert s.prob == pytest.approx([(0.5 + 0.2 + 0.6) / 3, (0.1 + 0.9 + 0.1) / 3])
    assert s.restricted_acc == pytest.approx([2 / 3, 1 / 3])  # layer 0: rows 0, 2 right; layer 1: row 1
    assert s.top1_acc == pytest.approx([2 / 3, 1 / 3])
    assert s.median_rank == [0.0, 4.0]
    assert s.class_prob.keys() == {"multiply", "add", "subtract"}  # no divide row, so no divide entry
    for c, values in {"multiply": [0.5, 0.1], "add": [0.2, 0.9], "subtract": [0.6, 0.1]}.items():
        assert s.class_prob[c] == pytest.approx(values)
    assert s.at(9) == {"prob": pytest.approx(1.1 / 3), "restricted_acc": pytest.approx(1 / 3),
                       "top1_acc": pytest.approx(1 / 3), "median_rank": 4.0}


def test_canonical_rows_and_table(llama, tiny_model_dir):
    """Status is full-vocab top-1 of the lens; class ids are chosen so some rows pass and some fail."""
    eps = json.loads((tiny_model_dir("llama") / "config.json").read_text())["rms_norm_eps"]
    layer = 2
    batch = padded_prompts(llama, CANONICAL)
    hidden, _ = forward_hidden(llama.model, batch.tokens)
    logits = np_lens(llama, eps, np.array(hidden[layer])[np.arange(8), np.array(batch.prompt_last)])  # (8, V)
    ids = (int(logits[0].argmax()), int(logits[2].argmin()), int(logits[4].argmin()), int(logits[6].argmin()))
    assert len(set(ids)) == 4
    ct = ClassTokens(CLASSES, ids, tuple(llama.tokenizer.decode([i]) for i in ids), (True,) * 4)
    rows = ev.canonical_rows(LogitLens(llama.model), llama.tokenizer, CANONICAL, ct, layer)
    p = np_softmax(logits)
    for b, (row, sample) in enumerate(zip(rows, CANONICAL)):
        k = CLASSES.index(sample.label)
        assert row.prompt == sample.prompt and row.expected == sample.label
        assert row.ok == (int(logits[b].argmax()) == ids[k])
        assert row.predicted == llama.tokenizer.decode([int(logits[b].argmax())])
        assert row.restricted == CLASSES[int(logits[b, list(ids)].argmax())]
        assert row.prob == pytest.approx(p[b, ids[k]], rel=1e-4, abs=1e-9)
    k_ok = sum(int(logits[b].argmax()) == ids[CLASSES.index(s.label)] for b, s in enumerate(CANONICAL))
    assert rows[0].ok and not rows[6].ok and not rows[7].ok and 1 <= k_ok <= 6

    table = report.format_canonical(rows)
    lines = table.splitlines()
    assert all(w in lines[0] for w in ("Prompt", "Predicted", "Expected", "Status"))
    assert sum("[OK]" in line for line in lines) == k_ok and sum("[FAIL]" in line for line in lines) == 8 - k_ok
    m = re.search(r"Accuracy: (\d+)/8 \((\d+)%\)", lines[-1])
    assert m and int(m.group(1)) == k_ok and abs(int(m.group(2)) - 100 * k_ok / 8) <= 0.5


def test_format_canonical_by_hand():
    rows = [ev.CanonicalRow(s.prompt, " x", s.label, i % 2 == 0, "add", 0.1) for i, s in enumerate(CANONICAL)]
    table = report.format_canonical(rows)
    assert "Accuracy: 4/8 (50%)" in table
    assert table.count("[OK]") == 4 and table.count("[FAIL]") == 4
    assert "'7 * 8 = '" in table  # prompts are shown with their trailing space visible
    assert "Accuracy: 0/0 (0%)" in report.format_canonical([])


def test_evaluate_is_consistent_with_its_parts(llama):
    ct = resolve_class_tokens(llama.tokenizer)
    lens = LogitLens(llama.model)
    heldout = SAMPLES[:6]
    e = ev.evaluate(lens, llama.tokenizer, ct, heldout, CANONICAL, 2, answers=False)
    assert e.answers is None and e.layer == 2
    assert e.canonical_correct == sum(r.ok for r in e.canonical)
    stats = ev.sample_lens_stats(lens, llama.tokenizer, heldout, ct)
    assert e.heldout_prob == pytest.approx(stats.prob[2])
    assert e.heldout_restricted_accuracy == pytest.approx(stats.restricted_acc[2])
    assert e.heldout_top1_accuracy == pytest.approx(stats.top1_acc[2])
    assert e.to_dict()["answer_accuracy"] is None and e.to_dict()["answer_accuracy_interval"] is None
    assert e.answer_nll is None


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize("generated, answer, ok", [
    ("56", "56", True), (" 56 ", "56", True), ("56\n7 * 8", "56", True), ("560", "56", False),
    ("56 is it", "56", False), ("5", "56", False), ("", "56", False), ("fifty-six", "56", False),
    ("-56", "56", False), ("-3", "-3", True), ("\n56", "56", False),
])
def test_answer_correct(generated, answer, ok):
    """Exact: the text up to the stop (greedy_answers already cut at EOS; a newline also ends it), stripped."""
    assert ev.answer_correct(generated, answer) is ok


@pytest.mark.parametrize("k, n, lo, hi", [
    # by hand: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    (0, 10, 0.0, 3.841459 / 13.841459),  # k = 0: hi = z^2 / (n + z^2)
    (8, 8, 8 / 11.841459, 1.0),  # k = n: lo = n / (n + z^2)
    (5, 10, 0.236593, 0.763407),
    (1, 4, 0.045587, 0.699358),
    (0, 0, 0.0, 1.0),  # no data: no information
])
def test_wilson_interval_by_hand(k, n, lo, hi):
    assert ev.wilson(k, n) == pytest.approx((lo, hi), abs=2e-6)


def test_wilson_rejects_impossible_counts():
    for k, n in ((3, 2), (-1, 4)):
        with pytest.raises(ValueError):
            ev.wilson(k, n)


def independent_greedy(loaded, prompt: str, n: int) -> list[int]:
    ids = encode_prompt(loaded.tokenizer, prompt)
    new = []
    for _ in range(n):
        nxt = int(mx.argmax(loaded.model(mx.array([ids + new]))[0, -1]).item())
        new.append(nxt)
    return new


def test_greedy_answers_group_by_length(llama, monkeypatch):
    monkeypatch.setattr(ev, "stop_ids", lambda tokenizer: set())  # no stop: every row runs the full budget
    samples = SAMPLES
    lengths = {len(encode_prompt(llama.tokenizer, s.prompt)) for s in samples}
    assert len(lengths) > 1
    got = ev.greedy_answers(LogitLens(llama.model), llama.tokenizer, samples, max_new_tokens=3)
    for s, text in zip(samples, got):
        assert text == llama.tokenizer.decode(independent_greedy(llama, s.prompt, 3)).split("\n")[0], s.prompt


def test_greedy_answers_stop_per_row_at_an_end_token(llama, monkeypatch):
    """Declare the 2nd token the model generates for the first prompt an end-of-sequence token: every row is
    cut before its first occurrence (a row without it runs the full budget)."""
    n = 4
    reference = {s.prompt: independent_greedy(llama, s.prompt, n) for s in SAMPLES}
    stop = reference[SAMPLES[0].prompt][1]
    monkeypatch.setattr(ev, "stop_ids", lambda tokenizer: {stop})
    got = ev.greedy_answers(LogitLens(llama.model), llama.tokenizer, SAMPLES, max_new_tokens=n)
    cut_rows = 0
    for s, text in zip(SAMPLES, got):
        ids = reference[s.prompt]
        cut = ids.index(stop) if stop in ids else n
        cut_rows += cut < n
        assert text == llama.tokenizer.decode(ids[:cut]).split("\n")[0], s.prompt
    assert cut_rows >= 1  # the stop really happened (row 0 at least)


def test_greedy_answers_stop_at_a_newline_and_end_early(llama, monkeypatch):
    """A lens that always emits a newline: every answer is empty and each length group runs one forward."""
    newline = llama.tokenizer.encode("\n", add_special_tokens=False)[0]

    calls = []

    class NewlineLens(LogitLens):
        def unembed(self, normed):
            calls.append(1)  # one call per forward of a group
            return super().unembed(normed) + 1e4 * (mx.arange(llama.vocab_size) == newline)

    got = ev.greedy_answers(NewlineLens(llama.model), llama.tokenizer, SAMPLES, max_new_tokens=5)
    assert got == [""] * len(SAMPLES)
    assert len(calls) == len({len(encode_prompt(llama.tokenizer, s.prompt)) for s in SAMPLES})


@pytest.mark.slow
def test_greedy_answer_on_embedded_model(embedded):
    sample = CANONICAL[0]  # 7 * 8 = 56: two answer tokens -> at most 3 new tokens by default
    (text,) = ev.greedy_answers(LogitLens(embedded.model), embedded.tokenizer, [sample])
    ids = independent_greedy(embedded, sample.prompt, 3)
    stops = {embedded.tokenizer.eos_token_id}
    cut = next((j for j, t in enumerate(ids) if t in stops), 3)
    assert text == embedded.tokenizer.decode(ids[:cut]).split("\n")[0]


def test_answer_accuracy_by_class(llama, monkeypatch):
    samples = [make_sample(7, "multiply", 8), make_sample(2, "multiply", 3), make_sample(1, "add", 1),
               make_sample(9, "subtract", 4)]
    fake = ["56", "7", " 2", "50"]  # right, wrong, right, wrong ("50" for 5 is no longer half right)
    monkeypatch.setattr(ev, "greedy_answers", lambda lens, tok, s: fake[: len(s)])
    acc = ev.answer_accuracy(LogitLens(llama.model), llama.tokenizer, samples)
    assert acc.accuracy == pytest.approx(0.5)
    assert acc.by_class == {"multiply": 0.5, "add": 1.0, "subtract": 0.0}
    assert (acc.correct, acc.total) == (2, 4)
    assert acc.by_class_counts == {"multiply": (1, 2), "add": (1, 1), "subtract": (0, 1)}
    assert acc.interval() == ev.wilson(2, 4) and acc.interval("add") == ev.wilson(1, 1)
    assert not hasattr(acc, "prefix_accuracy")
    assert acc.examples[0] == ("7 * 8 = ", "56", "56")


@pytest.mark.parametrize("terminator", ["eos", "none"])
def test_answer_nll_is_the_teacher_forced_answer_nll(llama, terminator):
    """Independent: the model's own full logits on prompt + answer (+ EOS), -log p of every answer token."""
    tok = llama.tokenizer
    total, count = 0.0, 0
    for s in SAMPLES:
        p = encode_prompt(tok, s.prompt)
        a = tok.encode(s.prompt + s.answer)[len(p):] + ([tok.eos_token_id] if terminator == "eos" else [])
        logp = np.array(nn.log_softmax(llama.model(mx.array([p + a]))[0].astype(mx.float32), axis=-1))
        total -= sum(logp[len(p) - 1 + j, t] for j, t in enumerate(a))
        count += len(a)
    ct = resolve_class_tokens(tok)
    got = ev.answer_nll(LogitLens(llama.model), tok, SAMPLES, ct, terminator, chunk=3)
    assert got == pytest.approx(total / count, rel=1e-5)
    assert ev.answer_nll(LogitLens(llama.model), tok, SAMPLES, ct, terminator) == pytest.approx(got, rel=1e-5)
