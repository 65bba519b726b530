"""The dual-reward loss: ``cls_weight * classification_loss + (1 - cls_weight) * answer_loss``.

Logits are computed only where a loss reads them: the lens at the last prompt token of the classifier
layer (B x V), and the final layer at the answer positions (B x A x V), never the full (B x T x V).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .lens import LogitLens, forward_hidden
from .tokens import Batch


def classification_loss(lens_logits: mx.array, class_ids: mx.array) -> mx.array:
    """Mean cross-entropy of the lens logits (B, V) against the class token, over the full vocabulary."""
    return nn.losses.cross_entropy(lens_logits.astype(mx.float32), class_ids).mean()


def answer_loss(logits: mx.array, targets: mx.array, mask: mx.array) -> mx.array:
    """Token-mean next-token cross-entropy over answer tokens: logits (B, A, V) at the positions that
    predict each answer token, targets (B, A), mask (B, A). The prompt is not scored."""
    ce = nn.losses.cross_entropy(logits.astype(mx.float32), targets) * mask
    return ce.sum() / mx.maximum(mask.sum(), 1.0)


def dual_loss(
    lens: LogitLens, batch: Batch, classifier_layer: int, cls_weight: float
) -> tuple[mx.array, mx.array, mx.array]:
    """(total, classification, answer) losses from one shared trunk forward."""
    # The last column is never read: every scored position (last prompt token, answer positions) is at most
    # T - 2, and position T - 1 would predict the token after the answer. Dropping it saves ~10% per step.
    hidden, final = forward_hidden(lens.model, batch.tokens[:, :-1])
    rows = mx.arange(batch.size)
    cls = classification_loss(lens(hidden[classifier_layer][rows, batch.prompt_last]), batch.class_ids)
    ans_states = final[rows[:, None], batch.answer_pos]  # (B, A, D), already final-normed
    ans = answer_loss(lens.unembed(ans_states), batch.answer_targets, batch.answer_mask)
    return cls_weight * cls + (1.0 - cls_weight) * ans, cls, ans
