"""Ablation at one layer: what an edit of block L's output costs the model (docs/science.md "Ablation").

:class:`LayerScorer` holds a fixed set of held-out problems (teacher-forced, answers with their terminator) and the
shipped general text (``measure.collateral``), and block L's output of the model on both, computed once. Scoring an
edit runs the model's own forward with block L's output replaced by ``edit(cached output)``
(``model.hooks.edited``): the edit ignores what the blocks below would compute, so only the blocks above L run, and
every condition (the class subspace, each random draw) costs one upper half of a forward. It reports, against the
unedited model:

* ``answer_nll``: teacher-forced answer NLL per answer token, terminator included (``measure.evaluate.answer_nll``'s
  definition);
* ``exact``: problems whose answer tokens and terminator are each the teacher-forced argmax, i.e. whose greedy
  output is exactly the answer and the terminator (``measure.evaluate.teacher_forced_answers``);
* ``kl``: KL(unedited || edited) of the final next-token distributions, per general-text position, in nats, on the
  first ``TEXT_WINDOWS`` window(s) of the shipped text;
* the logit lens at L on the edited states at the last prompt token: class-restricted accuracy, full-vocab top-1 and
  P(class token), against each problem's lens target;
* ``removed``: the share of the squared norm the edit took away at the last prompt token.

:func:`compare` sets a condition's cost against the same cost of random draws: their mean, min, max, and the
empirical p-value (k + 1) / (n + 1), k the draws that cost at least as much.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from lazarus_nb.data.prompts import Sample
from lazarus_nb.data.tokens import ClassTokens, make_batch, pad_prompts
from lazarus_nb.measure.collateral import general_text, kl_sum, log_softmax, window_size, windows
from lazarus_nb.measure.evaluate import lens_stats, teacher_forced_answers
from lazarus_nb.model.hooks import Edit, edited, hidden_states
from lazarus_nb.model.lens import LogitLens, read_states


@dataclass(frozen=True)
class Scores:
    """One condition on the scorer's problems and text."""

    answer_nll: float  # per answer token, teacher-forced, terminator included
    exact: int  # problems whose greedy output is exactly the answer and its terminator
    n: int  # problems
    kl: float  # mean KL(unedited || edited) per general-text position, nats (0 for the unedited model)
    lens_restricted: float  # the lens at L, last prompt token: class-restricted accuracy
    lens_top1: float  # ... full-vocab top-1 accuracy
    lens_prob: float  # ... mean P(class token)
    # ||h' - h||^2 / ||h||^2 at the last prompt token, h the model's own state and h' the scored one, mean over
    # problems: for a projection, the share of the squared norm it removed (a random k-dimensional subspace holds
    # k / D of it on average)
    removed: float

    @property
    def exact_rate(self) -> float:
        return self.exact / self.n

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exact_rate": self.exact_rate}


COSTS: dict[str, Callable[[Scores, Scores], float]] = {
    "answer_nll": lambda s, ref: s.answer_nll - ref.answer_nll,
    "exact": lambda s, ref: ref.exact_rate - s.exact_rate,
    "kl": lambda s, ref: s.kl,
    "lens_restricted": lambda s, ref: ref.lens_restricted - s.lens_restricted,
}
"""What a condition costs against the unedited model (``ref``), larger = worse: the rise in answer NLL, the drop in
exact answers, the KL on general text, the drop in the lens's class-restricted accuracy at L."""


@dataclass(frozen=True)
class Comparison:
    """A condition's cost beside the costs of the random draws."""

    value: float
    random_mean: float
    random_min: float
    random_max: float
    at_least: int  # random draws costing at least ``value``
    below: int  # random draws costing strictly less
    draws: int

    @property
    def p_value(self) -> float:
        """(k + 1) / (n + 1): the empirical p-value of "a random subspace costs at least as much"."""
        return (self.at_least + 1) / (self.draws + 1)

    @property
    def percentile(self) -> float:
        """The share of random draws costing strictly less than ``value`` (1: more than every draw)."""
        return self.below / self.draws

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "p_value": self.p_value, "percentile": self.percentile}


def compare(value: float, draws: Sequence[float]) -> Comparison:
    """``value`` against ``draws`` (the same cost of each random draw)."""
    d = np.asarray(draws, dtype=float)
    if d.size == 0:
        raise ValueError("no random draws to compare with")
    return Comparison(value, float(d.mean()), float(d.min()), float(d.max()), int((d >= value).sum()),
                      int((d < value).sum()), int(d.size))


LEVEL = 0.05
"""The empirical p-value at or below which a condition costs more than random subspaces (with 20 draws: only when
no draw costs as much, p = 1/21)."""


def verdict(comparison: Comparison) -> str:
    """The rule of docs/science.md "Ablation", written before the numbers: ``"above random"`` when the condition
    costs more than random subspaces of its dimension (p <= ``LEVEL``), else ``"within random"``: removing it costs
    no more than removing a random subspace."""
    return "above random" if comparison.p_value <= LEVEL else "within random"


TEXT_WINDOWS = 1
"""General-text windows the KL is measured on: the first of the shipped text's 5 (255 scored positions). Every
condition runs the blocks above L over them and unembeds each position: over the whole text that was 1.7x a
condition's time, and each window ranks the conditions alike (docs/performance.md "Ablation and steering"); None:
the whole text."""


@dataclass
class States:
    """Block L's output on the scorer's two inputs: the problems' batch and the general-text windows."""

    problems: mx.array  # (B, T, D)
    text: mx.array  # (W, T', D)


class LayerScorer:
    """Costs of edits of block ``layer``'s output on ``samples`` and the general text (see the module doc)."""

    def __init__(self, lens: LogitLens, tokenizer: Any, samples: Sequence[Sample], class_tokens: ClassTokens,
                 layer: int, terminator: str = "eos", context_length: int | None = None,
                 text_windows: int | None = TEXT_WINDOWS):
        self.lens, self.layer = lens, layer
        self.batch = make_batch(tokenizer, samples, class_tokens, terminator=terminator)
        # the last column is never read (a terminator predicts nothing), as in the training loss: ~8% less work
        self.tokens = self.batch.tokens[:, :-1]
        self.labels = [s.target_index for s in samples]
        self.class_ids = list(class_tokens.ids)
        pieces = windows(tokenizer, general_text(), window_size(context_length))[:text_windows]
        self.text_tokens, _ = pad_prompts(tokenizer, pieces)
        # the positions that predict a next token of their window: (window, position) with position < length - 1
        self.text_rows = mx.array([w for w, p in enumerate(pieces) for _ in range(len(p) - 1)])
        self.text_pos = mx.array([t for p in pieces for t in range(len(p) - 1)])
        self.states = self.block_states()
        self.reference_logp = self._text_logp(self.states.text)  # the unedited model's next-token distributions
        self.reference = self._score(self.states, None, self.reference_logp)

    @property
    def rows(self) -> mx.array:
        return mx.arange(self.batch.size)

    def block_states(self) -> States:
        """Block L's output on the problems and the text, of the model as it is configured now (a caller may switch
        adapters off around this call, ``lora.disabled``; the blocks above L then run as configured at scoring)."""
        out = States(hidden_states(self.lens.model, self.tokens, self.layer)[self.layer],
                     hidden_states(self.lens.model, self.text_tokens, self.layer)[self.layer])
        mx.eval(out.problems, out.text)
        return out

    def _upper(self, tokens: mx.array, state: mx.array) -> mx.array:
        """The final-normed output of the model with block L's output replaced by ``state``: the blocks below L do
        not run (nothing reads them)."""
        with edited(self.lens.model, {self.layer: lambda _: state}):
            return self.lens.trunk(tokens)

    def _text_logp(self, state: mx.array) -> np.ndarray:
        """(positions, V) next-token log-probabilities on the general text from block L's output ``state``."""
        final = self._upper(self.text_tokens, state)
        return log_softmax(self.lens.unembed(final[self.text_rows, self.text_pos]))

    def score(self, edit: Edit | None = None, states: States | None = None) -> Scores:
        """The scores with ``edit`` applied to block L's output (None: unedited) of ``states`` (default: the
        model's own, ``self.states``; another configuration's from ``block_states``)."""
        return self._score(states or self.states, edit)

    def _score(self, states: States, edit: Edit | None, text_logp: np.ndarray | None = None) -> Scores:
        problems = edit(states.problems) if edit is not None else states.problems
        nll, exact = teacher_forced_answers(self.lens, self.batch, self._upper(self.tokens, problems))
        if text_logp is None:
            text_logp = self._text_logp(edit(states.text) if edit is not None else states.text)
        kl = kl_sum(self.reference_logp, text_logp) / text_logp.shape[0]
        last = problems[self.rows, self.batch.prompt_last]
        lens = lens_stats(read_states(self.lens, last[None], None, self.class_ids, top_k=0), self.labels)
        before = self.states.problems[self.rows, self.batch.prompt_last]  # the model's own
        moved = mx.sum((last - before) ** 2, axis=-1) / mx.maximum(mx.sum(before * before, axis=-1), 1e-30)
        return Scores(float(nll.sum() / self.batch.answer_targets.size), int(exact.sum()), self.batch.size, kl,
                      lens.restricted_acc[0], lens.top1_acc[0], lens.prob[0], float(mx.mean(moved).item()))


def mean_state(lens: LogitLens, tokenizer: Any, samples: Sequence[Sample], class_tokens: ClassTokens, layer: int,
               terminator: str = "eos", chunk: int = 64) -> np.ndarray:
    """(D,) the mean of block ``layer``'s output over every real position (prompt, answer and terminator tokens, no
    padding) of ``samples`` teacher-forced: the state mean-ablation puts a subspace's component back to. The same
    kind of positions the projection edits, so the replaced component is typical of them."""
    total, count = None, 0
    for i in range(0, len(samples), chunk):
        batch = make_batch(tokenizer, samples[i : i + chunk], class_tokens, terminator=terminator)
        answers = np.bincount(np.array(batch.answer_rows), minlength=batch.size)
        lengths = np.array(batch.prompt_last) + 1 + answers
        real = mx.array(np.arange(batch.tokens.shape[1])[None, :] < lengths[:, None])
        h = hidden_states(lens.model, batch.tokens, layer)[layer].astype(mx.float32)
        part = np.array(mx.sum(h * real[..., None], axis=(0, 1)), dtype=np.float64)
        total = part if total is None else total + part
        count += int(lengths.sum())
    if total is None:
        raise ValueError("no samples to average")
    return total / count

