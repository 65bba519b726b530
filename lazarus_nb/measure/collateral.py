"""Collateral damage: how much an adapter changes the model away from arithmetic (docs/science.md "Collateral damage").

An adapter that makes layer L say ``multiply`` but changes everything else is not "preserving". On a fixed
general-text set that ships with the package (``texts/general_english.txt``: the opening of *Alice's Adventures
in Wonderland*, public domain; ``texts/README.md`` names the source), we compare the final-layer next-token
distributions of the model as it is with those of the same model with its adapters switched off
(``lora.disabled``, in the same process, so nothing but the adapters differs):

* ``kl``: KL(base || adapted) = sum_v p_base(v) (log p_base(v) - log p_adapted(v)), in nats, averaged over every
  scored position. 0 for the base model itself.
* ``perplexity``: exp(mean next-token NLL) of the model as it is, over the same positions.

The text is encoded once with the tokenizer's defaults (BOS where the tokenizer adds one) and cut into
consecutive windows of at most ``WINDOW`` tokens (and never more than the model's context); in each window
position t predicts token t + 1, so a window's first token is context only. Windows restart the context, as in
the usual non-overlapping-chunk perplexity; base and adapted are scored on exactly the same positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from lazarus_nb.data.tokens import encode_prompt

TEXT = "general_english.txt"


WINDOW = 256  # tokens per window: ~5 windows for the shipped text on a byte-level BPE tokenizer


def general_text() -> str:
    """The shipped general-text set (package data ``lazarus_nb/texts/general_english.txt``)."""
    return resources.files("lazarus_nb").joinpath("texts", TEXT).read_text(encoding="utf-8")


def windows(tokenizer: Any, text: str, size: int) -> list[list[int]]:
    """``text``'s ids (tokenizer defaults) cut into consecutive windows of at most ``size`` tokens; a last
    window of one token (nothing to predict) is dropped."""
    ids = encode_prompt(tokenizer, text)
    cut = [ids[i : i + size] for i in range(0, len(ids), size)]
    return [w for w in cut if len(w) >= 2]


@dataclass
class GeneralText:
    """Perplexity of the evaluated model on the general text, and how far it is from the base model there."""

    perplexity: float  # exp(mean next-token NLL) of the model as evaluated
    kl: float  # mean KL(base || evaluated) per position, nats; 0 when no adapter is active
    positions: int  # scored next-token positions


def log_softmax(logits: mx.array) -> np.ndarray:
    """(..., V) log-probabilities of ``logits`` in numpy float32: its vectorised exp is ~10x faster than mlx's on
    CPU, and a window is ~50 MB of logits."""
    out = np.array(logits.astype(mx.float32))
    out -= out.max(axis=-1, keepdims=True)
    return out - np.log(np.exp(out).sum(axis=-1, keepdims=True))


def kl_sum(base: np.ndarray, other: np.ndarray) -> float:
    """The sum over rows of KL(base || other) = sum_v p_base(v) (log p_base(v) - log p_other(v)), in nats, of two
    (N, V) log-probability arrays (``log_softmax``); summed in float64."""
    return float((np.exp(base) * (base - other)).sum(dtype=np.float64))


def window_size(context_length: int | None, window: int = WINDOW) -> int:
    """Tokens per general-text window: ``window``, fewer when the model's context is shorter."""
    return min(window, context_length or window)


def _log_probs(model: nn.Module, tokens: mx.array) -> np.ndarray:
    """(T - 1, V) next-token log-probabilities of one window; position t predicts token t + 1."""
    return log_softmax(model(tokens)[0, :-1])


def general_text_metrics(model: nn.Module, tokenizer: Any, text: str | None = None,
                         window: int = WINDOW, context_length: int | None = None) -> GeneralText:
    """KL(base || model) and the model's perplexity on ``text`` (default: the shipped general text), in windows
    of ``window`` tokens, fewer when the model's ``context_length`` (``LoadedModel.context_length``) is shorter.

    The base distribution is the same model inside ``lora.disabled``; when no adapter changes the model (the base
    model, an evaluation already inside ``disabled``, or fresh adapters, whose B matrices are zero) the two are the
    same model and KL is 0 without a second pass."""
    # model.lora imports mlx-lm: here, not at the top, so importing evaluate (and run.steps) stays light
    from lazarus_nb.model.lora import adapters, disabled

    active = any(m.scale != 0 and mx.any(m.lora_b != 0).item() for m in adapters(model).values())
    size = window_size(context_length, window)
    nll = kl = 0.0
    count = 0
    for ids in windows(tokenizer, general_text() if text is None else text, size):
        tokens = mx.array([ids], dtype=mx.int32)
        logp = _log_probs(model, tokens)
        nll -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum(dtype=np.float64))
        if active:
            with disabled(model):
                base = _log_probs(model, tokens)
            kl += kl_sum(base, logp)
        count += len(ids) - 1
    if count == 0:
        raise ValueError("the general text is too short to score (fewer than two tokens)")
    return GeneralText(perplexity=math.exp(nll / count), kl=kl / count, positions=count)
