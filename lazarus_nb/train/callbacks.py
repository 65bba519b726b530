"""What a training run reports as it goes, as typed calls (mlx-lm's ``tuner.callbacks.TrainingCallback``):
progress bars, step tables and live plots subclass ``TrainingCallback`` and override what they show."""

from __future__ import annotations

from lazarus_nb.train.history import Snapshot, StepLog
from lazarus_nb.train.state import TrainState


class TrainingCallback:
    """Every method does nothing here. ``train`` calls them from inside its loop, so an exception raised by one
    ends the run as it would anywhere in the loop (KeyboardInterrupt: the interrupted checkpoint is saved)."""

    def on_step(self, log: StepLog, state: TrainState) -> None:
        """After each optimiser step; ``log.step`` is ``state.step``, ``state.config.steps`` the run's length."""

    def on_snapshot(self, snapshot: Snapshot, seconds: float, state: TrainState) -> None:
        """After each logit-lens snapshot (step 0 is the base model's), which took ``seconds``."""

    def on_stop(self, state: TrainState) -> None:
        """``stop_when_readable`` ends the run here, after this step's snapshot, before ``config.steps``."""
