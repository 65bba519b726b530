"""The logit lens ``unembed(final_norm(h_l))`` and its readout at chosen positions, layers and target tokens.

The lens is built from the model's own modules, so it is exact for every mlx-lm architecture that keeps
the usual layout (``model.layers``, ``model.norm``, ``embed_tokens``/``lm_head``): tied embeddings use
``embed_tokens.as_linear``; Gemma's final-logit soft-capping is applied when the model has it; Gemma's
embedding scale lives inside the trunk, which we run unmodified. At the last layer the lens equals the
model's own logits (tests pin this for llama, qwen2 and gemma3); an architecture that does something else to
its logits (Granite's logit scaling, Cohere's logit scale) would give a silently wrong lens, so loading a model
checks ``last_layer_gap`` and refuses one where it is not zero up to float rounding.

The lens is linear in h along one direction per token, up to the per-row scale 1 / rms(h): logit_w(h) =
d_w . h / rms(h) with d_w = g * u_w, g the final norm's effective gain and u_w the unembedding row
(``LogitLens.readout_directions``; the class-readout subspace of docs/science.md "Ablation").

The hidden states it reads come from :mod:`lazarus_nb.model.hooks`, which records every block's output inside the
model's own forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from lazarus_nb.model.hooks import forward_hidden, parts


class LogitLens:
    """``lens_l(h) = unembed(final_norm(h))`` with the model's own final norm and unembedding."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.head, self.trunk = parts(model)
        args = getattr(self.head, "args", None)
        self.softcap = getattr(self.head, "final_logit_softcapping", None) or getattr(
            args, "final_logit_softcapping", None
        )

    def linear_logits(self, normed: mx.array) -> mx.array:
        """The head's linear map of already-normed states (``lm_head``, or the tied embedding), before any
        soft-capping: logit_w = u_w . normed with u_w the unembedding row of token w."""
        if "lm_head" in self.head.children():
            return self.head.lm_head(normed)
        return self.trunk.embed_tokens.as_linear(normed)

    def unembed(self, normed: mx.array) -> mx.array:
        """Vocabulary logits of already-normed states (the model's own head, soft-capped if it has one)."""
        logits = self.linear_logits(normed)
        if self.softcap:
            logits = mx.tanh(logits / self.softcap) * self.softcap
        return logits

    def norm_gain(self) -> mx.array:
        """(D,) the final norm's effective per-feature gain g, with ``norm(h) = g * h / rms(h)``: the model's own
        norm applied to a large constant vector (rms = its value, so eps is below float rounding), whatever the
        architecture's convention (Gemma stores w and applies 1 + w). Refused (ValueError) for a norm that is not
        of that form (a LayerNorm subtracts the mean)."""
        width = self.trunk.embed_tokens.weight.shape[-1]
        big = 1e3
        gain = self.trunk.norm(mx.full((1, width), big, dtype=mx.float32))[0]
        probe = mx.random.normal((2, width), key=mx.random.key(0))
        rms = mx.sqrt(mx.mean(probe * probe, axis=-1, keepdims=True))
        if not mx.allclose(self.trunk.norm(probe), gain * probe / rms, rtol=1e-3, atol=1e-5).item():
            raise ValueError(f"the final norm of this model ({type(self.trunk.norm).__name__}) is not "
                             "g * h / rms(h); the readout directions are not defined for it")
        return gain

    def readout_directions(self, token_ids: Sequence[int]) -> mx.array:
        """(K, D) the directions the lens reads each token along: d_w = g * u_w, so that (before soft-capping)
        logit_w(h) = d_w . h / rms(h) exactly. Up to the per-row scale 1 / rms(h), a token's lens logit is linear
        in h along d_w (docs/science.md "Ablation")."""
        width = self.trunk.embed_tokens.weight.shape[-1]
        # the head applied to the identity: column w is u_w, whatever the head's storage (tied, untied, quantized)
        rows = self.linear_logits(mx.eye(width, dtype=mx.float32))[:, mx.array(list(token_ids))].T
        return rows * self.norm_gain()[None, :]

    def __call__(self, hidden: mx.array) -> mx.array:
        """Lens logits of a block output."""
        return self.unembed(self.trunk.norm(hidden))

    def last_token_states(self, tokens: mx.array, positions: mx.array) -> tuple[mx.array, mx.array]:
        """Per-layer states at one position per row: ((L, B, D) stacked block outputs, (B, D) final normed)."""
        hidden, final = forward_hidden(self.model, tokens)
        rows = mx.arange(tokens.shape[0])
        return mx.stack([h[rows, positions] for h in hidden]), final[rows, positions]


def last_layer_gap(model: nn.Module, tokens: mx.array) -> float:
    """Largest difference between the lens at the last layer and the model's own logits on ``tokens``,
    relative to the largest logit: 0 (up to float rounding) exactly when the lens is the model's readout."""
    hidden, _ = forward_hidden(model, tokens)
    own = model(tokens).astype(mx.float32)
    lens = LogitLens(model)(hidden[-1]).astype(mx.float32)
    return (mx.abs(lens - own).max() / mx.maximum(mx.abs(own).max(), 1e-6)).item()


@dataclass
class LensReadout:
    """The logit lens at one position per prompt, for chosen layers and target tokens.

    Arrays are indexed [layer_index, prompt, ...] with ``layers`` giving the layer ids.
    """

    layers: list[int]
    target_ids: list[int]  # the class/target token ids, in column order
    probs: mx.array  # (L, B, K) softmax probability of each target over the full vocabulary
    ranks: mx.array  # (L, B, K) rank of each target in the full vocabulary (0 = top-1)
    top_ids: mx.array  # (L, B, k) the top-k token ids
    top_probs: mx.array  # (L, B, k)

    def full_top1(self, labels: mx.array) -> mx.array:
        """(L, B) bool: the full-vocabulary argmax is the expected target (``labels`` index target_ids)."""
        rows = mx.arange(labels.shape[0])
        return self.ranks[:, rows, labels] == 0

    def restricted_pred(self) -> mx.array:
        """(L, B) index of the most probable target among the targets only (class-restricted prediction)."""
        return mx.argmax(self.probs, axis=-1)


# Logits per unembedding matmul: several layers' rows go through one matmul (~256 rows of SmolLM2's 49,152-token
# vocabulary), which keeps the BLAS busy (30 matmuls of 32 rows ran at half the rate) and bounds memory.
_CHUNK_BYTES = 48 * 2**20


def readout(
    lens: LogitLens,
    tokens: mx.array,
    positions: mx.array,
    target_ids: Sequence[int],
    layers: Sequence[int] | None = None,
    top_k: int = 5,
) -> LensReadout:
    """Run the model once and read the lens at ``positions`` (one per row) for every layer in ``layers``
    (``top_k`` 0: no top-k tokens, which ``top_ids``/``top_probs`` then hold none of)."""
    states, _ = lens.last_token_states(tokens, positions)
    return read_states(lens, states, layers, target_ids, top_k)


def read_states(
    lens: LogitLens,
    states: mx.array,
    layers: Sequence[int] | None,
    target_ids: Sequence[int],
    top_k: int,
) -> LensReadout:
    """The lens on hidden ``states`` (num_layers, R, D): for every layer in ``layers`` (default all) and row,
    the probability and rank of each target id and the ``top_k`` tokens. Several layers' rows share one
    unembedding matmul, in chunks that bound the (rows, vocabulary) logits; the scoring is numpy's (``_scores``)."""
    layers = list(range(states.shape[0])) if layers is None else list(layers)
    rows, width = states.shape[1], states.shape[2]
    vocab = lens.trunk.embed_tokens.weight.shape[0]
    per_chunk = max(1, _CHUNK_BYTES // (4 * rows * vocab))
    targets = np.array(list(target_ids), dtype=np.int64)
    parts = []
    for i in range(0, len(layers), per_chunk):
        chunk = states[mx.array(layers[i : i + per_chunk])].reshape(-1, width)
        parts.append(_scores(np.array(lens(chunk).astype(mx.float32), copy=False), targets, top_k))  # no copy
    probs, ranks, top_ids, top_probs = (np.concatenate(p).reshape(len(layers), rows, p[0].shape[-1])
                                        for p in zip(*parts))
    return LensReadout(layers, list(target_ids), mx.array(probs), mx.array(ranks), mx.array(top_ids),
                       mx.array(top_probs))


def _scores(logits: np.ndarray, targets: np.ndarray, top_k: int) -> tuple[np.ndarray, ...]:
    """(probs (R, K), ranks (R, K), top ids (R, k), top probs (R, k)) of lens logits (R, V) over the full vocabulary.

    In numpy, not mlx: mlx's CPU ``exp`` is scalar, and the softmax normaliser over 49,152 logits per row was
    most of a snapshot's time (numpy's vectorised exp is ~10x faster). The normaliser is summed in float64."""
    peak = logits.max(axis=-1, keepdims=True)
    shifted = logits - peak  # the one (R, V) temporary
    np.exp(shifted, out=shifted)
    lse = peak + np.log(shifted.sum(axis=-1, dtype=np.float64, keepdims=True)).astype(np.float32)
    target_logits = logits[:, targets]  # (R, K)
    probs = np.exp(target_logits - lse)
    # rank = how many tokens score strictly higher (0 = top-1); one target at a time keeps the temporary (R, V)
    ranks = np.zeros(target_logits.shape, dtype=np.int64)
    for k in range(len(targets)):
        ranks[:, k] = (logits > target_logits[:, k, None]).sum(axis=-1)
    if top_k == 0:
        none = np.zeros((len(logits), 0))
        return probs, ranks.astype(np.int32), none.astype(np.int32), none.astype(np.float32)
    # argpartition then a sort of only k: a full sort of the vocabulary per row is ~10x slower
    part = np.argpartition(-logits, top_k - 1, axis=-1)[:, :top_k]
    order = np.take_along_axis(part, np.argsort(-np.take_along_axis(logits, part, axis=-1), axis=-1, kind="stable"),
                               axis=-1)
    top_probs = np.exp(np.take_along_axis(logits, order, axis=-1) - lse)
    return probs, ranks.astype(np.int32), order.astype(np.int32), top_probs
