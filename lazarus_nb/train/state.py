"""``TrainState``: a run in progress, everything a checkpoint holds. Its own module so the trainer, its
callbacks and the checkpoint all name it without importing one another."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.optimizers as optim

from lazarus_nb.data.prompts import Sample
from lazarus_nb.data.tokens import ClassTokens
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.history import History


@dataclass
class TrainState:
    """Everything a checkpoint holds; ``step`` is the last completed step."""

    config: TrainConfig
    class_tokens: ClassTokens
    classifier_layer: int
    adapted_layers: list[int]
    trainable_params: int
    step: int
    history: History
    optimizer: optim.Optimizer
    train_set: list[Sample]
    heldout: list[Sample]
    seconds: float  # training wall time so far
    status: str = "running"  # running | complete | interrupted | diverged
    # why a complete run ended: "steps" (all config.steps ran) or "readable" (stop_when_readable stopped it
    # early, at ``step`` < config.steps); None until it is complete
    stop_reason: str | None = None
