"""The dual-reward loss: ``cls_weight * classification + (1 - cls_weight) * answer``.

Logits are computed only where a loss reads them: the lens at the last prompt token of the classifier
layer (B x V), and the final layer at the batch's N answer tokens (N x V), never the full (B x T x V).

Both losses are a sum divided by a count: the examples (classification) and the answer tokens (answer loss) of
the batch by default, i.e. their means. Data-parallel training (``train.make_step`` with a group) passes each
rank's share of the *global* counts instead, so the ranks' pieces average to the loss of the global batch
exactly, however many answer tokens each rank holds (a plain average of per-rank means would not).
"""

from __future__ import annotations

import mlx.core as mx

from lazarus_nb.data.tokens import Batch
from lazarus_nb.measure.xent import cross_entropy
from lazarus_nb.model.hooks import forward_hidden
from lazarus_nb.model.lens import LogitLens


def averaged(ce: mx.array, count: mx.array | None = None) -> mx.array:
    """Per-row cross-entropies summed and divided by ``count`` (default: the rows, at least 1: the mean)."""
    return ce.sum() / (max(ce.shape[0], 1) if count is None else count)


def answer_loss(logits: mx.array, targets: mx.array, count: mx.array | None = None) -> mx.array:
    """Next-token cross-entropy over answer tokens, summed and divided by ``count`` (default: the number of answer
    tokens, the token mean): logits (N, V) at the positions that predict each answer token, targets (N,). The
    prompt is not scored."""
    return averaged(cross_entropy(logits.astype(mx.float32), targets), count)


def dual_loss(
    lens: LogitLens, batch: Batch, classifier_layer: int, cls_weight: float, counts: mx.array | None = None
) -> tuple[mx.array, mx.array, mx.array]:
    """(total, classification, answer) losses from one shared trunk forward. ``counts`` (2,): what the summed
    classification and answer losses are divided by (default: this batch's examples and answer tokens).

    Classification: the full-vocabulary cross-entropy of the lens at the last prompt token of the classifier
    layer against the class token. Answer: the final layer's next-token cross-entropy at the answer positions."""
    # The last column is never read: every scored position (last prompt token, answer positions) is at most
    # T - 2, and position T - 1 would predict the token after the answer. Dropping it saves ~10% per step.
    hidden, final = forward_hidden(lens.model, batch.tokens[:, :-1])
    rows = mx.arange(batch.size)
    # The B lens rows (final norm applied here) and the N answer rows (``final`` is already normed) go through
    # one unembedding and one cross-entropy: one matmul of B + N rows runs at a better rate than two of B and
    # N (the saving per step: docs/performance.md).
    states = mx.concatenate([lens.trunk.norm(hidden[classifier_layer][rows, batch.prompt_last]),
                             final[batch.answer_rows, batch.answer_pos]])
    targets = mx.concatenate([batch.class_ids, batch.answer_targets])
    ce = cross_entropy(lens.unembed(states).astype(mx.float32), targets)
    n_cls, n_ans = (None, None) if counts is None else (counts[0], counts[1])
    cls, ans = averaged(ce[: batch.size], n_cls), averaged(ce[batch.size :], n_ans)
    return cls_weight * cls + (1.0 - cls_weight) * ans, cls, ans
