"""The dual-reward loss: ``cls_weight * classification_loss + (1 - cls_weight) * answer_loss``.

Logits are computed only where a loss reads them: the lens at the last prompt token of the classifier
layer (B x V), and the final layer at the answer positions (B x A x V), never the full (B x T x V).

Both losses are a sum divided by a count: the examples (classification) and the answer tokens (answer loss) of
the batch by default, i.e. their means. Data-parallel training (``train.make_step`` with a group) passes each
rank's share of the *global* counts instead, so the ranks' pieces average to the loss of the global batch
exactly, however many answer tokens each rank holds (a plain average of per-rank means would not).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .lens import LogitLens, forward_hidden
from .tokens import Batch


def classification_loss(lens_logits: mx.array, class_ids: mx.array, count: mx.array | None = None) -> mx.array:
    """Cross-entropy of the lens logits (B, V) against the class token, over the full vocabulary, summed over the
    examples and divided by ``count`` (default B: the mean)."""
    ce = nn.losses.cross_entropy(lens_logits.astype(mx.float32), class_ids)
    return ce.mean() if count is None else ce.sum() / count


def answer_loss(logits: mx.array, targets: mx.array, mask: mx.array, count: mx.array | None = None) -> mx.array:
    """Next-token cross-entropy over answer tokens, summed and divided by ``count`` (default: the number of answer
    tokens, the token mean): logits (B, A, V) at the positions that predict each answer token, targets (B, A),
    mask (B, A). The prompt is not scored."""
    ce = nn.losses.cross_entropy(logits.astype(mx.float32), targets) * mask
    return ce.sum() / (mx.maximum(mask.sum(), 1.0) if count is None else count)


def dual_loss(
    lens: LogitLens, batch: Batch, classifier_layer: int, cls_weight: float, counts: mx.array | None = None
) -> tuple[mx.array, mx.array, mx.array]:
    """(total, classification, answer) losses from one shared trunk forward. ``counts`` (2,): what the summed
    classification and answer losses are divided by (default: this batch's examples and answer tokens)."""
    # The last column is never read: every scored position (last prompt token, answer positions) is at most
    # T - 2, and position T - 1 would predict the token after the answer. Dropping it saves ~10% per step.
    hidden, final = forward_hidden(lens.model, batch.tokens[:, :-1])
    rows = mx.arange(batch.size)
    n_cls, n_ans = (None, None) if counts is None else (counts[0], counts[1])
    cls = classification_loss(lens(hidden[classifier_layer][rows, batch.prompt_last]), batch.class_ids, n_cls)
    ans_states = final[rows[:, None], batch.answer_pos]  # (B, A, D), already final-normed
    ans = answer_loss(lens.unembed(ans_states), batch.answer_targets, batch.answer_mask, n_ans)
    return cls_weight * cls + (1.0 - cls_weight) * ans, cls, ans
