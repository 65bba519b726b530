"""The peer: mlx-lm's LoRA training step, written the way ``mlx_lm.tuner.trainer.train`` writes it
(``nn.value_and_grad(model, default_loss)`` plus ``optimizer.update`` inside ``mx.compile(inputs=state,
outputs=state)``), its mask set to score exactly our answer tokens."""

import lazarus_nb  # noqa: F401, I001  (first: preloads the optimized BLAS before anything imports mlx)

from collections.abc import Callable
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.tuner.trainer import default_loss

from bench.first_batch import adam


def peer_lengths(real: list[int], prompt: list[int]) -> mx.array:
    """default_loss scores token positions p with offset <= p <= length; (prompt length, total - 1) scores
    exactly the answer tokens, i.e. the same targets as our answer loss."""
    return mx.array([[p, t - 1] for p, t in zip(prompt, real)], dtype=mx.int32)


def peer_step_fn(model: nn.Module, learning_rate: float) -> Callable[[mx.array, mx.array], float]:
    """mlx-lm's trainer step: value_and_grad(default_loss) + Adam update, compiled over the state."""
    optimizer = adam(model, learning_rate)
    loss_value_and_grad = nn.value_and_grad(model, default_loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(tokens, lengths):
        (lvalue, toks), grad = loss_value_and_grad(model, tokens, lengths)
        optimizer.update(model, grad)
        return lvalue, toks

    def run(tokens: mx.array, lengths: mx.array) -> float:
        lvalue, toks = step(tokens, lengths)
        mx.eval(state, lvalue, toks)
        return lvalue.item()

    return run


def mlx_lm_padded(tokens: mx.array, pad_id: int) -> mx.array:
    """The tokens padded as mlx-lm's iterate_batches pads: to 1 + pad_to * ceil(max_len / pad_to), pad_to 32."""
    width = 1 + 32 * ((tokens.shape[1] + 31) // 32)
    out = np.full((tokens.shape[0], width), pad_id, dtype=np.int32)
    out[:, : tokens.shape[1]] = np.array(tokens)
    return mx.array(out)
