"""The classic logit-lens grid (nostalgebraist's "interpreting GPT: the logit lens", 2020; the NDIF workbench):
for one prompt, at every layer and every prompt position, the lens's top-1 token and its probability.

Where :func:`lens.readout` reads one position per prompt (the classification position), the grid reads all of
them from the same single forward pass (``hooks.forward_hidden``), so the cell at (layer, position) is what the
lens of that block's output predicts as the token *after* that position; at the last layer it is the model's
own prediction. With adapters on the model, :func:`compare` reads the grid twice, once with the adapters
switched off (``lora.disabled``: exactly the base model), so base and adapter can be shown side by side.

Why limits: one grid costs an unembedding per (layer, position) cell (a 49k-vocabulary matmul each on the
embedded model), and more than ~32 rows or columns of token text stop being readable. So a grid shows at most
``MAX_ROWS`` layers (all of them up to 32, else 32 evenly spaced ones with the first and the last) and the last
``MAX_POSITIONS`` prompt positions (the ones nearest the prediction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from lazarus_nb.data.tokens import encode_prompts
from lazarus_nb.errors import LazarusError
from lazarus_nb.model.hooks import forward_hidden
from lazarus_nb.model.layers import check_layers
from lazarus_nb.model.lens import LogitLens, read_states
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.model.lora import adapters, disabled

MAX_ROWS = 32


MAX_POSITIONS = 32


MAX_PROMPTS = 8
"""Prompts one grid figure shows (one row of grids each): the CLI's ``--figure`` draws the first 8."""


BASE, ADAPTED = "base model", "adapted model"


@dataclass
class LensGrid:
    """The lens's top-1 token at each (layer, position) of one prompt, on one model (``label``).

    Arrays are indexed [layer_index, position_index] with ``layers`` and ``positions`` giving the ids."""

    prompt: str
    label: str  # "base model" or "adapted model"
    n_tokens: int  # tokens in the whole prompt; ``positions`` may be only its last MAX_POSITIONS
    layers: list[int]
    positions: list[int]  # prompt positions shown (0-based token index)
    tokens: list[str]  # the prompt token at each shown position, as text
    next_tokens: list[str | None]  # the prompt token after each shown position (None after the last)
    top_ids: np.ndarray  # (layers, positions) int: the lens's argmax token id
    top_tokens: list[list[str]]  # (layers, positions) that token as text
    top_probs: np.ndarray  # (layers, positions) its softmax probability over the full vocabulary


def grid_layers(num_layers: int, max_rows: int = MAX_ROWS) -> list[int]:
    """The layers a grid shows by default: every layer up to ``max_rows``, else ``max_rows`` evenly spaced ones
    including the first and the last (the model's own prediction)."""
    if num_layers <= max_rows:
        return list(range(num_layers))
    return sorted({int(round(v)) for v in np.linspace(0, num_layers - 1, max_rows)})


def lens_grid(loaded: LoadedModel, prompt: str, layers: Sequence[int] | None = None, label: str = BASE,
              max_positions: int = MAX_POSITIONS) -> LensGrid:
    """The grid of ``prompt`` on ``loaded.model`` as it is now (adapters, if any, included): one forward pass,
    then the lens at the last ``max_positions`` positions of every layer in ``layers`` (default
    ``grid_layers``). The prompt is length-checked first (``tokens.encode_prompts``)."""
    ids = encode_prompts(loaded.tokenizer, [prompt], loaded.context_length)[0]
    layers = grid_layers(loaded.num_layers) if layers is None else list(layers)
    if not layers:
        raise LazarusError("a logit-lens grid needs at least one layer")
    check_layers(layers, loaded.num_layers, "grid layers")
    start = max(0, len(ids) - max_positions)
    lens = LogitLens(loaded.model)
    hidden, _ = forward_hidden(loaded.model, mx.array([ids], dtype=mx.int32))
    r = read_states(lens, mx.stack([h[0, start:] for h in hidden]), layers, [], top_k=1)  # (layers, positions, 1)
    top = np.array(r.top_ids)[..., 0].astype(np.int64)
    decode = loaded.tokenizer.decode
    text = {int(i): decode([int(i)]) for i in {*ids[start:], *top.ravel().tolist()}}
    return LensGrid(
        prompt=prompt, label=label, n_tokens=len(ids), layers=layers, positions=list(range(start, len(ids))),
        tokens=[text[i] for i in ids[start:]],
        next_tokens=[text[i] for i in ids[start + 1 :]] + [None],
        top_ids=top, top_tokens=[[text[int(i)] for i in row] for row in top],
        top_probs=np.array(r.top_probs)[..., 0].astype(np.float64),
    )


def compare(loaded: LoadedModel, prompt: str, layers: Sequence[int] | None = None,
            max_positions: int = MAX_POSITIONS) -> list[LensGrid]:
    """``[base]`` for a model without adapters; ``[base, adapted]`` with adapters, the base read with them
    switched off (``lora.disabled``), so both come from the one loaded model."""
    if not adapters(loaded.model):
        return [lens_grid(loaded, prompt, layers, BASE, max_positions)]
    with disabled(loaded.model):
        base = lens_grid(loaded, prompt, layers, BASE, max_positions)
    return [base, lens_grid(loaded, prompt, layers, ADAPTED, max_positions)]
