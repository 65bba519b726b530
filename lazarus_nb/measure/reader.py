"""The reader-only baseline (docs/science.md "Reader-only baseline"): with the model frozen, a low-rank affine
reader ``h -> h + B A h + b`` per layer, placed before the model's own final norm and unembedding, so its output
is read exactly as the logit lens reads a hidden state (``LogitLens``), and trained with the classification loss
(the full-vocabulary cross-entropy of the class token at the last prompt token).

The model never changes, so the reader trains on hidden states computed once
(:func:`~lazarus_nb.measure.evaluate.last_token_hidden`) and a step costs only its rows' unembedding. All asked
layers train in one pass: the parameters are stacked per layer (A (L, r, D), B (L, D, r), b (L, D)) and the loss is
the sum over layers of each layer's mean loss. A layer's parameters get the gradient of its own loss only, and Adam
is elementwise, so every layer trains exactly as it would alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np

from lazarus_nb.errors import LazarusError
from lazarus_nb.measure.evaluate import LensStats, lens_stats
from lazarus_nb.measure.xent import cross_entropy
from lazarus_nb.model.lens import LogitLens, read_states

Reader = dict[str, mx.array]
"""A reader's parameters for L layers: ``A`` (L, r, D), ``B`` (L, D, r), ``b`` (L, D)."""


def init_reader(layers: Sequence[int], width: int, rank: int, seed: int) -> Reader:
    """The reader at step 0 for ``layers``: B = 0 and b = 0, so it is the identity and the lens through it is the
    plain logit lens; A uniform in +-1/sqrt(width), as mlx-lm initialises LoRA's A. Layer l's A is drawn from
    (``seed``, l) alone, so a layer's reader is the same whichever layers train beside it."""
    bound = 1 / math.sqrt(width)
    a = np.stack([np.random.default_rng((seed, layer)).uniform(-bound, bound, (rank, width)) for layer in layers])
    n = len(layers)
    return {"A": mx.array(a.astype(np.float32)), "B": mx.zeros((n, width, rank)), "b": mx.zeros((n, width))}


def params_per_layer(width: int, rank: int) -> int:
    """Trainable parameters of one layer's reader: A (r x D), B (D x r) and b (D)."""
    return 2 * rank * width + width


def apply_reader(reader: Reader, states: mx.array) -> mx.array:
    """``h + B A h + b`` of hidden ``states`` (L, N, D), each layer through its own reader."""
    low = states @ reader["A"].transpose(0, 2, 1)  # (L, N, r)
    return states + low @ reader["B"].transpose(0, 2, 1) + reader["b"][:, None, :]


def layer_losses(reader: Reader, lens: LogitLens, states: mx.array, targets: mx.array) -> mx.array:
    """(L,) each layer's mean classification loss: the full-vocabulary cross-entropy of the lens through the reader
    on ``states`` (L, B, D) against the class-token ids ``targets`` (B,). All L x B rows share one unembedding."""
    n_layers, rows, width = states.shape
    logits = lens(apply_reader(reader, states).reshape(-1, width)).astype(mx.float32)
    ce = cross_entropy(logits, mx.broadcast_to(targets, (n_layers, rows)).reshape(-1))
    return ce.reshape(n_layers, rows).mean(axis=1)


def train_reader(
    lens: LogitLens,
    reader: Reader,
    states: mx.array,
    targets: Sequence[int],
    plan: Sequence[Sequence[int]],
    learning_rate: float,
    bias_correction: bool = True,
    callback: Callable[[int, Reader, float | None], None] | None = None,
) -> tuple[Reader, list[float]]:
    """Train ``reader`` (from ``init_reader``) on the training problems' hidden ``states`` (L, N, D) with their
    class-token ids ``targets`` (N,): one Adam step per entry of ``plan`` (the sample indices of each step's
    batch). Returns the trained reader and each step's loss (the mean over layers of each layer's mean loss).

    Only the reader is differentiated: the model's weights (its final norm and unembedding) are constants here.
    ``callback(step, reader, loss)`` hears of step 0 (before training, loss None) and of every step after its
    update. A non-finite loss stops before its update, in one sentence."""
    optimizer = optim.Adam(learning_rate=learning_rate, bias_correction=bias_correction)
    optimizer.init(reader)
    ids = mx.array(list(targets))
    # compiled: the cross-entropy's exp and its gradient fuse (a step ran ~1.5x faster); the model's arrays are
    # constants of the compiled graph, which is right for a frozen model
    loss_and_grad = mx.compile(mx.value_and_grad(lambda r, x, t: layer_losses(r, lens, x, t).sum()))
    report = callback or (lambda step, r, loss: None)
    report(0, reader, None)
    losses = []
    for step, indices in enumerate(plan, 1):
        rows = mx.array(np.asarray(indices))
        loss, grads = loss_and_grad(reader, states[:, rows], ids[rows])
        value = loss.item() / states.shape[0]
        if not math.isfinite(value):
            raise LazarusError(f"the reader's training diverged at step {step} (loss {value}); try a lower "
                               "learning rate")
        reader = optimizer.apply_gradients(grads, reader)
        mx.eval(reader, optimizer.state)
        losses.append(value)
        report(step, reader, value)
    return reader, losses


def reader_stats(lens: LogitLens, reader: Reader, states: mx.array, layers: Sequence[int], class_ids: Sequence[int],
                 labels: Sequence[int]) -> LensStats:
    """The lens through ``reader`` on hidden ``states`` (L, N, D) of the ``layers``: per layer the mean P(class
    token), class-restricted and full-vocab top-1 accuracy, ``labels`` (N,) indexing ``class_ids``."""
    read = read_states(lens, apply_reader(reader, states), None, class_ids, top_k=0)
    return lens_stats(replace(read, layers=list(layers)), labels)
