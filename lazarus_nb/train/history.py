"""A run's typed records: the losses of every step, the logit-lens snapshots, and the ``History`` that holds
them (``history.json`` in a checkpoint). Plain data (numpy only), so the checkpoint and the figures read
them without loading the trainer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lazarus_nb.train.config import READABLE, STOP_STREAK

SNAPSHOT_SETS: dict[str, str] = {"heldout": "top1_acc", "train": "train_top1_acc"}
"""The snapshot sets, and the ``Snapshot`` field of each one's full-vocab top-1 accuracy."""


@dataclass
class StepLog:
    step: int  # 1-based optimiser step
    total: float
    cls_loss: float
    ans_loss: float
    seconds: float  # wall time of this step


@dataclass
class Snapshot:
    """Logit lens on the fixed snapshot batch after ``step`` steps (0 = before training)."""

    step: int
    prob: list[float]  # per layer: mean P(correct class token)
    restricted_acc: list[float]  # per layer: class-restricted accuracy
    top1_acc: list[float]  # per layer: full-vocab top-1 accuracy
    # per operation class (``data.CLASSES`` name): per layer, mean P(that class's own token) over the snapshot
    # set's problems of that class, so "which operation becomes readable first" can be seen. Empty in
    # histories written before it was recorded.
    class_prob: dict[str, list[float]] = field(default_factory=dict)
    # the same lens on a fixed, class-balanced subset of the *training* problems (docs/science.md "Snapshots"):
    # memorisation (the ``problem`` control) shows here, generalisation in the held-out lists above. Empty in
    # histories written before it was recorded.
    train_prob: list[float] = field(default_factory=list)
    train_restricted_acc: list[float] = field(default_factory=list)
    train_top1_acc: list[float] = field(default_factory=list)


@dataclass
class History:
    layers: list[int]
    steps: list[StepLog] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)

    def emergence(self, metric: str = "prob") -> tuple[list[int], list[int], np.ndarray]:
        """(snapshot steps, layers, values (layers x steps)) for the emergence heatmap/curves."""
        steps = [s.step for s in self.snapshots]
        values = np.array([getattr(s, metric) for s in self.snapshots], dtype=float).T
        return steps, self.layers, values.reshape(len(self.layers), len(steps))

    def steps_to_readable(self, layer: int, threshold: float = READABLE, on: str = "heldout") -> int | None:
        """The first snapshot step at which the full-vocab top-1 accuracy of the lens at ``layer`` reaches
        ``threshold`` (``READABLE``), None if no snapshot does (docs/science.md "Steps to readable").

        Measured on a *snapshot set*: ``on="heldout"`` the fixed class-balanced subset of the held-out set that
        every snapshot scores (``snapshot_size`` problems, 32 by default: 0.9 means at least 29 of 32), not on the
        whole held-out set; ``on="train"`` its training-set twin (None in a history without one). Only at snapshot
        steps, so it is a multiple of ``snapshot_every`` (or the last step)."""
        i = self.layers.index(layer)
        metric = SNAPSHOT_SETS[on]
        return next((s.step for s in self.snapshots if getattr(s, metric) and getattr(s, metric)[i] >= threshold),
                    None)

    def readable_streak(self, layer: int, threshold: float, length: int = STOP_STREAK) -> bool:
        """Whether the last ``length`` snapshots all read full-vocab top-1 >= ``threshold`` at ``layer`` (on the
        snapshot set, like ``steps_to_readable``): the ``stop_when_readable`` rule."""
        i = self.layers.index(layer)
        last = self.snapshots[-length:]
        return len(last) == length and all(s.top1_acc[i] >= threshold for s in last)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """The inverse of ``to_dict``; also reads the ``history.json`` of older checkpoints, whose snapshots
        lack ``class_prob`` (they get an empty one)."""
        return cls(d["layers"], [StepLog(**s) for s in d["steps"]], [Snapshot(**s) for s in d["snapshots"]])
