"""The model and the batch every step benchmark times: the trainer's own first batch (``train.schedule``'s step
1), or random tokens of its shape on a TinyLlama-1.1B-shaped model."""

import lazarus_nb  # noqa: I001  (first: preloads the optimized BLAS before anything imports mlx)

from dataclasses import dataclass, fields, replace

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx_lm.models import llama

from lazarus_nb.data.tokens import Batch
from lazarus_nb.model.load import DEFAULT_MODEL
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.loop import prepare, scheduled_batches
from lazarus_nb.train.state import TrainState

# TinyLlama-1.1B's shape (random weights, fp32): the "1.1B" row of the scaling table.
TINYLLAMA = dict(model_type="llama", hidden_size=2048, num_hidden_layers=22, intermediate_size=5632,
                 num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5, vocab_size=32000,
                 rope_theta=10000.0, tie_word_embeddings=False)
BATCH_FIELDS = [f.name for f in fields(Batch)]


@dataclass
class Setup:
    name: str
    model: nn.Module
    batch: Batch  # the trainer's first batch, or random tokens of its shape
    state: TrainState  # as train.prepare builds it: the classifier layer, the Adam our step uses


def lengths_of(batch: Batch) -> tuple[list[int], list[int]]:
    """(prompt + answer tokens, prompt tokens) per row: the real tokens, pads excluded."""
    prompt = [int(p) + 1 for p in batch.prompt_last.tolist()]
    answer = np.bincount(np.array(batch.answer_rows), minlength=batch.size).tolist()
    return [p + a for p, a in zip(prompt, answer)], prompt


def pad_fraction(batches: list[Batch]) -> float:
    return 1 - sum(sum(lengths_of(b)[0]) for b in batches) / sum(b.tokens.size for b in batches)


def adam(model: nn.Module, learning_rate: float) -> optim.Adam:
    opt = optim.Adam(learning_rate=learning_rate)
    opt.init(model.trainable_parameters())
    return opt


def build(model_name: str, batch_size: int) -> Setup:
    """``embedded``, ``tinyllama-1.1b-random`` or any model ``lazarus_nb.load_model`` takes."""
    cfg = TrainConfig(batch_size=batch_size)
    builtin = model_name in ("embedded", "tinyllama-1.1b-random")
    loaded = lazarus_nb.load_model(DEFAULT_MODEL if builtin else model_name)
    state = prepare(loaded, cfg)
    batch = next(iter(scheduled_batches(loaded.tokenizer, state)))  # the batch the trainer's step 1 trains on
    if model_name != "tinyllama-1.1b-random":
        name = "smollm2-135m (embedded)" if model_name == "embedded" else model_name
        return Setup(name, loaded.model, batch, state)
    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs(**TINYLLAMA))
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    model.eval()
    state = prepare(replace(loaded, model=model, num_layers=TINYLLAMA["num_hidden_layers"]), cfg)
    # Random tokens of the default batch's shape; positions, masks and lengths of the real batch.
    rng = np.random.default_rng(0)
    vocab = TINYLLAMA["vocab_size"]
    tokens = mx.array(rng.integers(3, vocab, size=batch.tokens.shape), dtype=mx.int32)
    targets = tokens[batch.answer_rows, batch.answer_pos + 1]
    rand = replace(batch, tokens=tokens, answer_targets=targets,
                   class_ids=mx.array(rng.integers(3, vocab, size=batch.size), dtype=mx.int32))
    return Setup("TinyLlama-1.1B shape (random weights)", model, rand, state)
