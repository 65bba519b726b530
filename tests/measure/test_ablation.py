"""The ablation scorer (measure.ablation) against independent computations on the tiny llama: the unedited scores
are the evaluation's own answer NLL, an edit scored from the cached block output equals the same edit in a plain
forward, KL and the mean state by hand, and the empirical p-value's counts."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from lazarus_nb.data.prompts import make_sample
from lazarus_nb.data.tokens import encode_example, resolve_class_tokens
from lazarus_nb.measure import subspace
from lazarus_nb.measure.ablation import COSTS, LayerScorer, Scores, compare, mean_state, verdict
from lazarus_nb.measure.collateral import general_text, windows
from lazarus_nb.measure.evaluate import answer_nll
from lazarus_nb.model import lora
from lazarus_nb.model.hooks import edited, forward_hidden
from lazarus_nb.model.lens import LogitLens

SAMPLES = [make_sample(7, "multiply", 8), make_sample(23, "add", 45), make_sample(89, "subtract", 34),
           make_sample(48, "divide", 6), make_sample(3, "add", 4), make_sample(12, "multiply", 5)]
LAYER = 1


@pytest.fixture
def adapted(fresh):
    """The tiny llama with V/O adapters whose B matrices are random (so the adapter changes the model)."""
    loaded = fresh()
    lora.apply_lora(loaded.model, lora.LoraConfig(rank=4))
    mx.random.seed(3)
    for m in lora.adapters(loaded.model).values():
        m.lora_b = 0.3 * mx.random.normal(m.lora_b.shape)
    return loaded


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def by_hand(model, tokenizer, samples, edit=None):
    """(answer NLL per token, per-problem greedy-exact, general-text log-probs) from plain full forwards, one
    problem at a time (no padding, no cache), with ``edit`` on block LAYER's output."""
    total, count, exact = 0.0, 0, []
    with edited(model, {LAYER: edit} if edit is not None else {}):
        for s in samples:
            p, a = encode_example(tokenizer, s.prompt, s.answer)
            logp = log_softmax(np.array(model(mx.array([p + a]))[0]))
            rows = [len(p) - 1 + j for j in range(len(a))]
            total -= sum(logp[r, t] for r, t in zip(rows, a))
            count += len(a)
            exact.append(all(int(np.argmax(logp[r])) == t for r, t in zip(rows, a)))
        first = windows(tokenizer, general_text(), 256)[0]
        text = log_softmax(np.array(model(mx.array([first]))[0, :-1]))
    return total / count, exact, text


def test_unedited_scores_are_the_models_own(adapted):
    tokens = resolve_class_tokens(adapted.tokenizer)
    lens = LogitLens(adapted.model)
    scorer = LayerScorer(lens, adapted.tokenizer, SAMPLES, tokens, LAYER, text_windows=1)
    ref = scorer.reference
    assert ref.answer_nll == pytest.approx(answer_nll(lens, adapted.tokenizer, SAMPLES, tokens), rel=1e-5)
    nll, exact, _ = by_hand(adapted.model, adapted.tokenizer, SAMPLES)
    assert ref.answer_nll == pytest.approx(nll, rel=1e-4)
    assert ref.exact == sum(exact) and ref.n == len(SAMPLES)
    assert ref.kl == 0.0 and ref.removed == 0.0
    assert scorer.score() == ref  # scoring nothing again gives the same numbers


def test_an_edit_scored_from_the_cached_output_equals_a_plain_forward(adapted):
    """The scorer runs only the blocks above the layer on the cached, edited output; a plain forward with the same
    edit inside the model, one problem at a time, gives the same NLL, exact answers and KL."""
    tokens = resolve_class_tokens(adapted.tokenizer)
    lens = LogitLens(adapted.model)
    scorer = LayerScorer(lens, adapted.tokenizer, SAMPLES, tokens, LAYER, text_windows=1)
    q = subspace.random_bases(adapted.hidden_size, 24, 1, seed=5)[0]  # large: KL's asymmetry shows
    edit = subspace.project_out(q)
    got = scorer.score(edit)
    nll, exact, text = by_hand(adapted.model, adapted.tokenizer, SAMPLES, edit)
    _, _, plain_text = by_hand(adapted.model, adapted.tokenizer, SAMPLES)
    assert got.answer_nll == pytest.approx(nll, rel=1e-4)
    assert got.answer_nll != pytest.approx(scorer.reference.answer_nll, rel=1e-6)  # the edit did something
    assert got.exact == sum(exact)
    kl = float((np.exp(plain_text) * (plain_text - text)).sum(axis=-1).mean())
    assert kl > 0 and got.kl == pytest.approx(kl, rel=2e-5), (got.kl, kl)
    # the lens at the layer reads the edited states, and the removed share is the projection's
    hidden, _ = forward_hidden(adapted.model, scorer.batch.tokens)
    rows = mx.arange(len(SAMPLES))
    h = np.array(hidden[LAYER][rows, scorer.batch.prompt_last], dtype=np.float64)
    share = (((h @ q) ** 2).sum(axis=-1) / (h * h).sum(axis=-1)).mean()
    assert got.removed == pytest.approx(share, rel=1e-4)


def test_states_of_another_configuration_run_through_the_adapted_upper_blocks(adapted):
    """Block states computed with the adapters off below the layer, scored: equal to the model whose adapters at
    blocks <= LAYER are off (the upper blocks keep theirs)."""
    tokens = resolve_class_tokens(adapted.tokenizer)
    scorer = LayerScorer(LogitLens(adapted.model), adapted.tokenizer, SAMPLES, tokens, LAYER, text_windows=1)
    with lora.disabled(adapted.model, range(LAYER + 1)):
        states = scorer.block_states()
        nll, exact, _ = by_hand(adapted.model, adapted.tokenizer, SAMPLES)
    got = scorer.score(states=states)
    assert got.answer_nll == pytest.approx(nll, rel=1e-4) and got.exact == sum(exact)
    assert got.answer_nll != pytest.approx(scorer.reference.answer_nll, rel=1e-6)
    assert got.removed > 0


def test_mean_state_by_hand(tiny_llama):
    tokens = resolve_class_tokens(tiny_llama.tokenizer)
    lens = LogitLens(tiny_llama.model)
    got = mean_state(lens, tiny_llama.tokenizer, SAMPLES, tokens, LAYER, chunk=4)
    rows = []
    for s in SAMPLES:  # every real token of each example, unpadded
        p, a = encode_example(tiny_llama.tokenizer, s.prompt, s.answer)
        hidden, _ = forward_hidden(tiny_llama.model, mx.array([p + a]))
        rows.append(np.array(hidden[LAYER][0], dtype=np.float64))
    assert np.allclose(got, np.concatenate(rows).mean(axis=0), rtol=1e-4, atol=1e-5)


def test_the_comparison_counts_and_p_value():
    c = compare(0.5, [0.1, 0.6, 0.5, 0.2])
    assert (c.at_least, c.below, c.draws) == (2, 2, 4)
    assert c.p_value == pytest.approx(3 / 5) and c.percentile == pytest.approx(0.5)
    assert (c.random_mean, c.random_min, c.random_max) == (pytest.approx(0.35), 0.1, 0.6)
    top = compare(1.0, [0.0] * 20)
    assert top.p_value == pytest.approx(1 / 21) and verdict(top) == "above random"
    assert verdict(compare(1.0, [0.0] * 18 + [2.0, 3.0])) == "within random"
    with pytest.raises(ValueError):
        compare(1.0, [])


def test_costs_are_larger_when_worse():
    ref = Scores(1.0, 8, 10, 0.0, 1.0, 0.9, 0.8, 0.0)
    worse = Scores(1.5, 6, 10, 0.2, 0.25, 0.0, 0.01, 0.05)
    assert all(COSTS[m](worse, ref) > 0 for m in COSTS)
    assert COSTS["exact"](worse, ref) == pytest.approx(0.2) and COSTS["answer_nll"](worse, ref) == pytest.approx(0.5)
    assert all(COSTS[m](ref, ref) == 0 for m in COSTS)


@pytest.mark.slow
def test_teacher_forced_exact_is_greedy_exact_on_the_real_model(embedded_dir):
    """``teacher_forced_answers``' exactness is greedy decoding's: on the embedded model, with and without a subspace
    removed at layer 16, per problem, "every answer token is the teacher-forced argmax" equals "greedy decoding (a
    plain loop re-reading the whole prefix) starts with the answer's tokens". Terminator "none": the base model
    rarely ends an answer with its end-of-sequence token, and the equivalence is the same token by token."""
    from lazarus_nb import load_model
    from lazarus_nb.data.prompts import train_heldout_split
    from lazarus_nb.data.tokens import make_batch
    from lazarus_nb.measure.evaluate import teacher_forced_answers

    loaded = load_model(str(embedded_dir))
    lens, tok = LogitLens(loaded.model), loaded.tokenizer
    _, held = train_heldout_split(16, 24, seed=0)
    tokens = resolve_class_tokens(tok)
    q = subspace.random_bases(loaded.hidden_size, 4, 1, seed=0)[0]
    for edit in (None, subspace.project_out(q)):
        with edited(loaded.model, {16: edit} if edit is not None else {}):
            batch = make_batch(tok, held, tokens, terminator="none")
            _, final = forward_hidden(loaded.model, batch.tokens)
            _, exact = teacher_forced_answers(lens, batch, final)
            greedy = []
            for s in held:
                p, a = encode_example(tok, s.prompt, s.answer, "none")
                ids = list(p)
                for _ in a:
                    ids.append(int(mx.argmax(loaded.model(mx.array([ids]))[0, -1]).item()))
                greedy.append(ids[len(p):] == a)
        assert exact.tolist() == greedy
        assert 0 < sum(greedy) < len(held)  # both kinds of problem are there: the comparison can fail
