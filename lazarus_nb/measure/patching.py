"""Activation patching (docs/science.md "Activation patching"): is the operation the model reads also the one it uses?

For a pair of prompts that differ only in the operator (``data.tokens.encode_pair``), and for every block ``l`` and
prompt position ``p``: run the target prompt with block ``l``'s output at ``p`` replaced by the source prompt's
(``hooks.edited``), and score both answers teacher-forced after the target prompt, terminator included. With
``LD = log P(source answer) - log P(target answer)``, the effect is

    (LD_patched - LD_target) / (LD_source - LD_target)

so 0 is the clean target run and 1 the clean source run; ``first_token`` is the same on the answers' first tokens
alone (NaN for a pair whose answers start with the same token). With a classifier layer ``C`` and its class tokens,
the lens at ``C`` at the last prompt position after the patch: the class-restricted argmax and whether it is also the
full-vocabulary top-1 (a patch at a block above ``C`` cannot change it).

How it stays fast (docs/performance.md "Activation patching"): one batch per layer for all pairs and positions; the
edit ignores its input, so mlx never computes the blocks below ``l``; positions before ``p`` are not run again:
each row continues from the clean run's keys and values (``model.prefix.forward_from``); the prompt from ``p`` on
runs once and each answer continues from it; vocabulary logits only at the scored positions. Before the first token
where the prompts differ, causal attention makes the source's block outputs the target's (bit for bit when each
prompt runs alone; two rows of one batch can differ in the last bit), so the patched run is the clean target run:
no forward, effect exactly 0 (``every_position`` computes them anyway, equal to 0 up to float rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from lazarus_nb.data.pairs import Pair
from lazarus_nb.data.tokens import PairIds
from lazarus_nb.measure.evaluate import greedy_answers
from lazarus_nb.model.hooks import Edit, capture, edited, hidden_states
from lazarus_nb.model.lens import LogitLens, read_states
from lazarus_nb.model.prefix import Keys, forward_from

MAX_ROWS = 192
"""Patched prompt rows per forward (twice as many answer rows follow): bounds the keys and block outputs one forward
holds (~0.1 GB on SmolLM2)."""


@dataclass
class ClassRead:
    """The lens at the classifier layer at the last prompt position: the class-restricted argmax (an index into the
    class tokens) and whether that token is also the full-vocabulary top-1."""

    cls: np.ndarray  # int, any shape
    top1: np.ndarray  # bool, the same shape


@dataclass
class PairPatching:
    """One pair on one model. Arrays are (layers, prompt positions) of this pair's target prompt."""

    ld: np.ndarray  # LD of the patched run (the whole answers)
    first_ld: np.ndarray  # LD on the first answer tokens
    ld_target: float  # LD of the clean target run
    ld_source: float  # ... of the clean source run
    first_ld_target: float
    first_ld_source: float
    shares_first_token: bool  # the two answers start with the same token: no first-token effect
    computed: np.ndarray  # bool: patched by a forward (False: before the first differing token, nothing to patch)
    reads: ClassRead | None  # (classifier layer + 1, positions): after a patch at blocks 0..C
    clean_reads: ClassRead | None  # (2,): the clean target run's read, the clean source run's

    @property
    def effect(self) -> np.ndarray:
        """(LD - LD_target) / (LD_source - LD_target): 0 the clean target run, 1 the clean source run."""
        return _normalised(self.ld, self.ld_target, self.ld_source)

    @property
    def first_token(self) -> np.ndarray:
        """The same on the first answer token; all NaN when the answers share their first token."""
        if self.shares_first_token:
            return np.full(self.first_ld.shape, np.nan)
        return _normalised(self.first_ld, self.first_ld_target, self.first_ld_source)


def _normalised(ld: np.ndarray, target: float, source: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ld - target) / (source - target)


def _pad(rows: Sequence[Sequence[int]]) -> mx.array:
    width = max(1, max(len(r) for r in rows))
    return mx.array([list(r) + [0] * (width - len(r)) for r in rows], dtype=mx.int32)


def _groups(lengths: Sequence[int], max_rows: int) -> list[list[int]]:
    """Row indices grouped by length, at most ``max_rows`` per group: no padding inside a forward (padded tokens
    were half of the work when all rows shared one batch)."""
    by: dict[int, list[int]] = {}
    for r, n in enumerate(lengths):
        by.setdefault(n, []).append(r)
    return [rows[i : i + max_rows] for _, rows in sorted(by.items()) for i in range(0, len(rows), max_rows)]


def _log_probs(logits: mx.array, targets: Sequence[int], rows: Sequence[int] | None = None) -> np.ndarray:
    """log P(targets[k]) at logits row ``rows[k]`` (default: row k) over the full vocabulary. The normaliser is
    numpy's (its ``exp`` is vectorised; mlx's CPU ``exp`` is scalar, ~3x slower here), summed in float64, once per
    row however many targets read it."""
    a = np.array(logits.astype(mx.float32), copy=False)
    peak = a.max(axis=-1, keepdims=True)
    shifted = a - peak
    np.exp(shifted, out=shifted)
    norm = peak[:, 0] + np.log(shifted.sum(axis=-1, dtype=np.float64)).astype(np.float32)
    at = np.arange(len(targets)) if rows is None else np.asarray(rows)
    return a[at, np.asarray(targets)] - norm[at]


def _read(lens: LogitLens, states: mx.array, class_ids: mx.array) -> tuple[mx.array, mx.array]:
    """(class-restricted argmax, it is also the full-vocabulary argmax) of the lens on ``states`` (R, D)."""
    logits = lens(states)
    cls = mx.argmax(logits[:, class_ids], axis=-1)
    return cls, mx.argmax(logits, axis=-1) == class_ids[cls]


def _score_answers(lens: LogitLens, last: mx.array, prompts: Sequence[int], keys: Keys, starts: Sequence[int],
                   answers: Sequence[Sequence[int]], edit: tuple[int, mx.array] | None = None,
                   keep: bool = False, max_rows: int = 2 * MAX_ROWS) -> tuple[np.ndarray, mx.array | None]:
    """Teacher-forced log P of each answer row r, (R, 2) [first token, whole answer]: the first token from
    ``last[prompts[r]]``, the final-normed state of its prompt's last position (one vocabulary row serves every
    answer after that prompt); the rest from a continuation of ``answers[r][:-1]`` after the prompt's ``keys``
    (row r), at position ``starts[r]``. ``edit`` (layer, states (R, N, D)): that block's outputs are these (the
    clean run's, below a patch). ``keep``: also return the continuations' block outputs, (layers, R, N, D) with N
    the longest continuation."""
    model = lens.model
    scored, targets, rows_of = [last], [a[0] for a in answers], list(prompts)
    owner = list(range(len(answers)))
    kept: list[tuple[list[int], mx.array]] = []
    for rows in _groups([len(a) - 1 for a in answers], max_rows):
        n = len(answers[rows[0]]) - 1
        if n == 0:  # one-token answers (no terminator): the first token is all there is, and no continuation
            kept.append((rows, mx.zeros((len(lens.trunk.layers), len(rows), 1, last.shape[-1]), dtype=last.dtype)))
            continue
        index = mx.array(rows)
        tokens = mx.array([answers[r][:-1] for r in rows], dtype=mx.int32)
        edits = {} if edit is None else {edit[0]: lambda _, s=edit[1][index][:, :n]: s}
        with edited(model, edits), capture(model) as hidden:
            final, _ = forward_from(model, tokens, mx.array(starts)[index], keys.take(index))
        first_row = sum(x.shape[0] for x in scored)
        scored.append(final.reshape(-1, final.shape[-1]))
        targets += [t for r in rows for t in answers[r][1:]]
        rows_of += list(range(first_row, first_row + n * len(rows)))
        owner += [r for r in rows for _ in range(n)]
        if keep:
            kept.append((rows, mx.stack(hidden)))
    logp = _log_probs(lens.unembed(mx.concatenate(scored)), targets, rows_of)
    out = np.zeros((len(answers), 2))
    out[:, 0] = logp[: len(answers)]
    np.add.at(out[:, 1], np.array(owner), logp)
    if not keep:
        return out, None
    width = max(h.shape[2] for _, h in kept)
    order = np.argsort(np.concatenate([rows for rows, _ in kept]))
    states = mx.concatenate([mx.pad(h, [(0, 0), (0, 0), (0, width - h.shape[2]), (0, 0)]) for _, h in kept], axis=1)
    return out, states[:, mx.array(order)]


@dataclass
class _Clean:
    """The clean runs of every pair: the prompts' block outputs and keys, each answer's block outputs after the
    target prompt, and the scores."""

    states: mx.array  # (layers, 2n, W, D): rows 0..n-1 the targets, n..2n-1 the sources
    keys: Keys  # the prompts' keys, the same rows
    answer_states: mx.array  # (layers, 2n, N, D): row 2i + a: target prompt i followed by answer a (0 source, 1 target)
    scores: np.ndarray  # (2, n, 2, 2): [target/source prompt, pair, source/target answer, first/whole]
    reads: tuple[np.ndarray, np.ndarray] | None  # class read of the 2n prompts at the classifier layer


def _clean(lens: LogitLens, pairs: Sequence[PairIds], layer: int | None, class_ids: mx.array | None) -> _Clean:
    n = len(pairs)
    lengths = [len(p.target_prompt) for p in pairs] * 2
    prompts = _pad([p.target_prompt for p in pairs] + [p.source_prompt for p in pairs])
    with capture(lens.model) as hidden:
        final, keys = forward_from(lens.model, prompts, mx.zeros(2 * n, dtype=mx.int32), lengths=lengths)
    states = mx.stack(hidden)
    last = final[mx.arange(2 * n), mx.array(lengths) - 1]
    reads = None if layer is None else _read(lens, states[layer][mx.arange(2 * n), mx.array(lengths) - 1], class_ids)
    mx.eval(states, last, keys.keys, keys.values, keys.positions, *(reads or ()))
    rows = [(w * n + i, a) for w in range(2) for i in range(n) for a in range(2)]  # the target prompts' rows first
    prompt_rows = [r for r, _ in rows]
    answers = [(pairs[r % n].source_answer, pairs[r % n].target_answer)[a] for r, a in rows]
    scores, answer_states = _score_answers(lens, last, prompt_rows, keys.take(mx.array(prompt_rows)),
                                           [lengths[r] for r in prompt_rows], answers, keep=True)
    answer_states = answer_states[:, : 2 * n]
    mx.eval(answer_states)
    return _Clean(states, keys, answer_states, scores.reshape(2, n, 2, 2),
                  None if reads is None else (np.array(reads[0]), np.array(reads[1])))


def patch_pairs(
    lens: LogitLens,
    pairs: Sequence[PairIds],
    classifier_layer: int | None = None,
    class_ids: Sequence[int] = (),
    every_position: bool = False,
    max_rows: int = MAX_ROWS,
) -> list[PairPatching]:
    """Patch every block output at every prompt position of each pair (see the module doc), on ``lens.model`` as it
    is. With ``classifier_layer`` and ``class_ids``, also the lens class there after each patch of blocks
    0..``classifier_layer``. ``every_position``: run the positions whose patch changes nothing too (tests)."""
    if not pairs:
        raise ValueError("no pairs to patch")
    n, num_layers = len(pairs), len(lens.trunk.layers)
    ids = mx.array(list(class_ids)) if classifier_layer is not None else None
    clean = _clean(lens, pairs, classifier_layer, ids)
    lengths = [len(p.target_prompt) for p in pairs]
    width = max(lengths)
    scores = np.full((num_layers, n, width, 2, 2), np.nan)  # [layer, pair, position, answer, first/whole]
    cls = np.full((num_layers, n, width), -1)
    top1 = np.zeros((num_layers, n, width), dtype=bool)
    for layer in range(num_layers):
        rows = [(i, p) for i in range(n) for p in range(0 if every_position else pairs[i].first, lengths[i])]
        for start in range(0, len(rows), 4 * max_rows):  # bounds the keys held for one layer's answers
            chunk = rows[start : start + 4 * max_rows]
            out = _patch_rows(lens, pairs, clean, layer, chunk, classifier_layer, ids, max_rows)
            for (i, p), s, c, t in zip(chunk, *out):
                scores[layer, i, p], cls[layer, i, p], top1[layer, i, p] = s, c, t
    return [_pair_result(pairs[i], i, scores[:, i, : lengths[i]], cls[:, i, : lengths[i]], top1[:, i, : lengths[i]],
                         clean, classifier_layer, n) for i in range(n)]


def _patch_rows(lens: LogitLens, pairs: Sequence[PairIds], clean: _Clean, layer: int, rows: list[tuple[int, int]],
                classifier_layer: int | None, class_ids: mx.array | None, max_rows: int) -> tuple[np.ndarray, ...]:
    """Patch block ``layer`` at (pair i, position p) for each row: the prompt from p on after the clean keys before
    p, then each answer after it. Returns per row: scores (2 answers x first/whole), class read, its top-1."""
    model, n = lens.model, len(pairs)
    reading = classifier_layer is not None and layer <= classifier_layer
    lasts, keys, reads, order = [], [], [], []
    for group in _groups([len(pairs[i].target_prompt) - p for i, p in rows], max_rows):
        pair_ix = mx.array([rows[r][0] for r in group])
        at = mx.array([rows[r][1] for r in group])
        tokens = mx.array([pairs[rows[r][0]].target_prompt[rows[r][1]:] for r in group], dtype=mx.int32)
        columns = at[:, None] + mx.arange(tokens.shape[1])[None, :]  # a group's rows all end at their prompt's end
        target = clean.states[layer][pair_ix[:, None], columns]  # the clean target's block outputs from p on
        patched = mx.concatenate([clean.states[layer][n + pair_ix, at][:, None], target[:, 1:]], axis=1)
        with edited(model, {layer: lambda _, s=patched: s}), capture(model) as hidden:
            final, group_keys = forward_from(model, tokens, at, clean.keys.take(pair_ix).before(at))
        lasts.append(final[:, -1])
        keys.append(group_keys)
        if reading:
            reads.append(_read(lens, hidden[classifier_layer][:, -1], class_ids))
        order += group
    back = mx.array(np.argsort(order))  # the rows in their given order again
    last, prompt_keys = mx.concatenate(lasts)[back], Keys.concat(keys).take(back)
    cls, top1 = (mx.concatenate([r[k] for r in reads])[back] for k in range(2)) if reading else (None, None)
    mx.eval(last, *([cls, top1] if reading else []))  # not the keys: below `layer` they are never computed
    # each answer continues the patched prompt; block `layer` there is the clean run's (no patch reaches it)
    both = [(r, a) for r in range(len(rows)) for a in range(2)]
    index = mx.array([r for r, _ in both])
    answers = [(pairs[rows[r][0]].source_answer, pairs[rows[r][0]].target_answer)[a] for r, a in both]
    answer_states = clean.answer_states[layer][mx.array([2 * rows[r][0] + a for r, a in both])]
    scores, _ = _score_answers(lens, last, [r for r, _ in both], prompt_keys.take(index),
                               [len(pairs[rows[r][0]].target_prompt) for r, _ in both], answers,
                               (layer, answer_states), max_rows=2 * max_rows)
    if not reading:
        return scores.reshape(len(rows), 2, 2), np.full(len(rows), -1), np.zeros(len(rows), dtype=bool)
    return scores.reshape(len(rows), 2, 2), np.array(cls), np.array(top1)


def _pair_result(pair: PairIds, i: int, scores: np.ndarray, cls: np.ndarray, top1: np.ndarray, clean: _Clean,
                 classifier_layer: int | None, n: int) -> PairPatching:
    """Pair i's arrays: patched scores where computed, the clean target's elsewhere (the same run)."""
    computed = ~np.isnan(scores[..., 0, 0])
    target, source = clean.scores[0, i], clean.scores[1, i]  # [answer, first/whole]
    filled = np.where(computed[..., None, None], scores, target)
    ld = filled[..., 0, :] - filled[..., 1, :]  # (layers, positions, first/whole)
    reads = clean_reads = None
    if classifier_layer is not None and clean.reads is not None:
        c, t = clean.reads[0][[i, n + i]], clean.reads[1][[i, n + i]]
        done = computed[: classifier_layer + 1]
        reads = ClassRead(np.where(done, cls[: classifier_layer + 1], c[0]),
                          np.where(done, top1[: classifier_layer + 1], t[0]))
        clean_reads = ClassRead(c, t)
    return PairPatching(ld[..., 1], ld[..., 0], float(target[0, 1] - target[1, 1]), float(source[0, 1] - source[1, 1]),
                        float(target[0, 0] - target[1, 0]), float(source[0, 0] - source[1, 0]),
                        pair.source_answer[0] == pair.target_answer[0], computed, reads, clean_reads)


@dataclass
class RunView:
    """One run of a pair's target (or source) prompt, as the patching widget shows it."""

    top: list[tuple[str, float]]  # the lens's top tokens at the classifier layer, last prompt position
    cls: int | None  # the class-restricted read there (an index into the class tokens); None without classes
    cls_top1: bool  # that class token is also the full-vocabulary top-1
    answer: str  # the greedy answer, up to its stop
    p_source: float  # P(source answer), teacher-forced after this run's prompt, terminator included
    p_target: float  # P(target answer)

    def to_dict(self) -> dict:
        return {"top": [[t, p] for t, p in self.top], "class": self.cls, "class_top1": self.cls_top1,
                "answer": self.answer, "p_source_answer": self.p_source, "p_target_answer": self.p_target}


def view_runs(lens: LogitLens, tokenizer: Any, pair: Pair, ids: PairIds, layer: int, class_ids: Sequence[int],
              patch: tuple[int, int], top_k: int = 5) -> list[RunView]:
    """[the target run with block ``patch[0]``'s output at position ``patch[1]`` the source's, the clean target run,
    the clean source run]: the lens at ``layer`` (last prompt position), the greedy answer, and both answers'
    probabilities. The three runs share each forward (one batch, the patch on the first run's rows only): well
    under a second on SmolLM2."""
    model = lens.model
    block, at = patch
    state = hidden_states(model, mx.array([ids.source_prompt], dtype=mx.int32), block)[block][0, at]
    width = len(ids.target_prompt)

    def patched(first_rows: int) -> Edit:
        """The edit that patches the first ``first_rows`` rows of a batch (the patched run's) at the prompt."""
        def put(h: mx.array) -> mx.array:
            if h.shape[1] < width:  # a generation step after the prompt: no patch there
                return h
            where = (mx.arange(h.shape[0]) < first_rows)[:, None, None] & (mx.arange(h.shape[1]) == at)[None, :, None]
            return mx.where(where, state, h)

        return put

    answers = [ids.source_answer, ids.target_answer]
    prompts = [ids.target_prompt, ids.target_prompt, ids.source_prompt]
    rows = _pad([p + a[:-1] for p in prompts for a in answers])  # run k's rows: 2k (source answer), 2k + 1
    with edited(model, {block: patched(2)}), capture(model) as hidden:
        final = lens.trunk(rows)
    with edited(model, {block: patched(1)}):
        greedy = greedy_answers(lens, tokenizer, [pair.target, pair.target, pair.source])
    last = width - 1
    which = [r for r in range(len(rows)) for _ in answers[r % 2]]
    cols = [last + j for r in range(len(rows)) for j in range(len(answers[r % 2]))]
    logp = _log_probs(lens.unembed(final[mx.array(which), mx.array(cols)]), [t for r in range(len(rows))
                                                                           for t in answers[r % 2]])
    totals = np.zeros(len(rows))
    np.add.at(totals, np.array(which), logp)
    read = read_states(lens, hidden[layer][::2, last][None], None, class_ids, top_k)
    probs, ranks = np.array(read.probs)[0], np.array(read.ranks)[0]
    top_ids, top_probs = np.array(read.top_ids)[0], np.array(read.top_probs)[0]
    views = []
    for k in range(3):
        cls = int(np.argmax(probs[k])) if class_ids else None
        top = [(tokenizer.decode([int(t)]), float(p)) for t, p in zip(top_ids[k], top_probs[k])]
        views.append(RunView(top, cls, bool(cls is not None and ranks[k, cls] == 0), greedy[k],
                             float(np.exp(totals[2 * k])), float(np.exp(totals[2 * k + 1]))))
    return views
