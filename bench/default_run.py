"""The first steps of a default run as the CLI trains them (``train.train`` with ``TrainConfig()``: its schedule,
its compile choice, a snapshot every ``snapshot_every`` steps), against mlx-lm's step on the same batches.

After each of our steps, mlx-lm's compiled step (``mlx_lm_peer``) trains a second copy of the model on the same
batch; its time is measured and taken out of our wall clock, so both see the same load. Reports seconds per step
including snapshots (from the end of the step-0 snapshot; a ``run_steps`` that is a multiple of ``snapshot_every``
counts the steady share of snapshots), the snapshot overhead in place (the seconds the trainer reports for each
snapshot), and time-to-readable: seconds from the start of ``train`` (compiling, the step-0 snapshot included) to
the snapshot at ``History.steps_to_readable`` of the classifier layer.
"""

import lazarus_nb  # noqa: I001  (first: preloads the optimized BLAS before anything imports mlx)

import time
from collections.abc import Callable
from statistics import median

import mlx.core as mx
import numpy as np

from bench.first_batch import lengths_of
from bench.machine import Contamination, timed
from bench.mlx_lm_peer import peer_lengths, peer_step_fn
from lazarus_nb.model.load import DEFAULT_MODEL, LoadedModel
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import READABLE, TrainConfig
from lazarus_nb.train.history import Snapshot, StepLog
from lazarus_nb.train.loop import Trainer, batch_for, prepare, schedule, snapshot_due
from lazarus_nb.train.state import TrainState


class Enough(Exception):
    """Raised by ``Alongside`` to end ``train`` after the steps the benchmark times."""


class Alongside(TrainingCallback):
    """Times our run as it goes and runs the peer's step on each of our batches, until ``run_steps``."""

    def __init__(self, loaded: LoadedModel, peer: Callable[[mx.array, mx.array], float], plan: list[np.ndarray],
                 run_steps: int) -> None:
        self.loaded, self.peer, self.plan, self.run_steps = loaded, peer, plan, run_steps
        self.marks: dict[tuple[str, int], float] = {}  # when each report came, in our run's own time
        self.hidden = 0.0  # seconds spent on the peer: not part of our run
        self.peer_times: list[float] = []
        self.snapshot_seconds: list[float] = []

    def mark(self, kind: str, step: int) -> None:
        self.marks[(kind, step)] = time.perf_counter() - self.hidden

    def on_step(self, log: StepLog, state: TrainState) -> None:
        self.mark("step", log.step)
        t = time.perf_counter()
        batch = batch_for(self.loaded.tokenizer, state, self.plan[log.step - 1])
        self.peer_times.append(timed(self.peer, batch.tokens, peer_lengths(*lengths_of(batch))))
        self.hidden += time.perf_counter() - t
        cfg = state.config
        if log.step == self.run_steps and not snapshot_due(log.step, cfg.steps, cfg.snapshot_every):
            raise Enough

    def on_snapshot(self, snapshot: Snapshot, seconds: float, state: TrainState) -> None:
        self.mark("snapshot", state.step)
        self.snapshot_seconds.append(seconds)
        if state.step == self.run_steps:
            raise Enough


def measure(model_name: str, run_steps: int, trainer: Trainer | None = None) -> dict:
    """The first ``run_steps`` steps of a default run on a fresh ``model_name`` (``embedded`` or what
    ``lazarus_nb.load_model`` takes), run by ``trainer`` (the dual-reward run's by default)."""
    cfg = TrainConfig()
    loaded, peer_loaded = (lazarus_nb.load_model(DEFAULT_MODEL if model_name == "embedded" else model_name)
                           for _ in range(2))
    state = prepare(loaded, cfg)
    prepare(peer_loaded, cfg)  # the same adapters (same seed), on the peer's own copy
    run = Alongside(loaded, peer_step_fn(peer_loaded.model, cfg.learning_rate), schedule(loaded.tokenizer, state),
                    run_steps)
    watch = Contamination()
    start = time.perf_counter()
    try:
        (trainer or Trainer()).train(loaded, state, callback=run)
    except Enough:
        pass
    marks, snap_times, peer_times = run.marks, run.snapshot_seconds, run.peer_times
    steps = [s.seconds for s in state.history.steps]
    after_first = marks[("snapshot", 0)]
    per_step = (max(marks.values()) - after_first) / run_steps
    readable = state.history.steps_to_readable(state.classifier_layer)
    peer_mean = sum(peer_times) / len(peer_times)
    return {
        "run_steps": run_steps,
        "run_step_compiled": cfg.compiles(cfg.steps),
        "run_seconds_per_step_with_snapshots": per_step,
        "run_step_seconds_mean": sum(steps) / len(steps),
        "run_step_seconds_median": median(steps),
        "run_peer_step_seconds_mean": peer_mean,  # incl. its compiles per new batch shape, as mlx-lm pays them
        "run_peer_step_seconds_median": median(peer_times),
        "run_speedup_with_snapshots": peer_mean / per_step,
        "run_speedup_steps_only": peer_mean / (sum(steps) / len(steps)),
        "run_snapshot_seconds": snap_times,
        "run_snapshot_overhead": sum(snap_times[1:]) / sum(steps),  # snapshots after step 0 / the steps' time
        "readable_threshold": READABLE,
        "steps_to_readable": readable,
        "time_to_readable_seconds": None if readable is None else marks[("snapshot", readable)] - start,
        "run_first_snapshot_seconds": after_first - start,
        "run_other_processes_cpu_fraction": watch.fraction(),
    }
