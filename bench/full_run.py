"""``--full``: a full default run (``run_dual_reward(TrainConfig())``: 500 steps, snapshots every 25, baseline and
final evaluation with greedy answers) with its snapshots timed in place, then the snapshot overhead measured the
other way: 100 steps with ``snapshot_every`` 25 against 0 (fresh model each: apply_lora needs a clean model)."""

import lazarus_nb  # noqa: I001  (first: preloads the optimized BLAS before anything imports mlx)

import time
from statistics import median

from bench.machine import Contamination
from lazarus_nb.run.steps import run_dual_reward
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.history import Snapshot, StepLog
from lazarus_nb.train.loop import prepare, train
from lazarus_nb.train.state import TrainState


class Clock(TrainingCallback):
    """When each step and snapshot was reported, and the seconds each snapshot took."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.snapshot_seconds: list[float] = []

    def on_step(self, log: StepLog, state: TrainState) -> None:
        self.times.append(time.perf_counter())

    def on_snapshot(self, snapshot: Snapshot, seconds: float, state: TrainState) -> None:
        self.times.append(time.perf_counter())
        self.snapshot_seconds.append(seconds)


def measure() -> dict:
    watch = Contamination()
    loaded = lazarus_nb.load_model()
    clock = Clock()
    t0 = time.perf_counter()
    res = run_dual_reward(loaded, TrainConfig(), output=None, callback=clock)
    full = time.perf_counter() - t0
    train_wall = clock.times[-1] - clock.times[0]  # from the step-0 snapshot to the last snapshot
    snap_times = clock.snapshot_seconds
    out = {
        "full_run_seconds": full,
        "full_run_train_step_seconds": res.state.seconds,  # sum of the 500 optimiser steps
        "full_run_train_wall_seconds": train_wall,
        "full_run_eval_seconds": full - train_wall,  # baseline + final evaluation (+ first snapshot, prepare)
        "full_run_snapshots": len(res.state.history.snapshots),
        "full_run_final_canonical_correct": res.final.canonical_correct,
        "full_run_final_loss": res.state.history.steps[-1].total,
        "full_run_snapshot_seconds": sum(snap_times),
        "full_run_snapshot_seconds_median": median(snap_times),
        # snapshots at the default snapshot_every, as a fraction of the optimiser steps' time
        "full_run_snapshot_overhead": sum(snap_times[1:]) / res.state.seconds,
    }
    del loaded, res
    walls: dict[int, list[tuple[float, float, int, float]]] = {}
    for every in (0, 25, 0, 25):  # twice each, alternating; the median of the two counts
        loaded = lazarus_nb.load_model()
        state = prepare(loaded, TrainConfig(steps=100, snapshot_every=every))
        clock = Clock()
        t = time.perf_counter()
        train(loaded, state, callback=clock)
        walls.setdefault(every, []).append((time.perf_counter() - t, state.seconds,
                                            len(state.history.snapshots), sum(clock.snapshot_seconds)))
        del loaded, state
    off = median([w[0] for w in walls[0]])
    on = median([w[0] for w in walls[25]])
    off_steps = median([w[1] for w in walls[0]])
    extra = walls[25][0][2] - walls[0][0][2]
    each = (on - off) / extra
    out.update({
        "snapshot_overhead": (on - off) / off,
        "snapshot_run_steps": 100,
        "snapshot_on_seconds": on,
        "snapshot_off_seconds": off,
        "snapshot_seconds_each": each,
        "train_loop_step_seconds_median": off_steps / 100,
        "snapshot_overhead_direct": median([w[3] for w in walls[25]]) / median([w[1] for w in walls[25]]),
        # at the default 500 steps: 21 snapshots instead of 2
        "snapshot_overhead_default_projected": 19 * each / (500 * off_steps / 100 + 2 * each),
        "full_other_processes_cpu_fraction": watch.fraction(),
    })
    return out
