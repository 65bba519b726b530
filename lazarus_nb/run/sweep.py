"""Sweeps: a grid of dual-reward runs, resumable, shared over ranks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx

from lazarus_nb.errors import LazarusError
from lazarus_nb.measure.evaluate import Evaluation
from lazarus_nb.model.load import DEFAULT_MODEL, LoadedModel, peek_config
from lazarus_nb.model.lora import remove_adapters
from lazarus_nb.results.sweep import SweepResult
from lazarus_nb.run.controls import compare_controls
from lazarus_nb.run.steps import Log, load, quiet, run_dual_reward
from lazarus_nb.show import figures
from lazarus_nb.show import text as report
from lazarus_nb.show.plots import output as plot_output
from lazarus_nb.train import checkpoint
from lazarus_nb.train import grid as sweeps
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import TrainConfig


def _sweep_run(loaded: LoadedModel, planned: sweeps.Planned, answers: bool,
               callback: TrainingCallback | None, log: Log,
               baselines: dict[tuple, Evaluation]) -> dict[str, Any]:
    """One run of a sweep from the base model, checkpointed in its directory (``planned.path``); its row."""
    path = planned.path
    remove_adapters(loaded.model)  # the previous run's (or the caller's) adapters: every run starts from the base
    t0 = time.perf_counter()
    result = None
    if planned.action != sweeps.DIVERGED:  # a diverged checkpoint would diverge again: record it as it is
        try:
            result = run_dual_reward(loaded, planned.run.config, output=path, resume=planned.action == sweeps.RESUME,
                                     callback=callback, answers=answers, log=log, baselines=baselines).to_dict()
        except LazarusError:
            if not (checkpoint.is_checkpoint(path) and checkpoint.read_record(path).status == "diverged"):
                raise
            # diverged: a result of the grid (say, a learning rate too high), not a reason to stop the sweep
    return sweeps.make_row(path, checkpoint.read_record(path).to_dict(), result, time.perf_counter() - t0)


def _wait_for_ranks(group: Any) -> None:
    """Every rank reaches the end of its runs before rank 0 reads all rows (an all-sum of one number)."""
    try:
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))
    except RuntimeError as exc:  # a peer exited (its error is on its own stderr)
        raise LazarusError(f"another rank of the sweep stopped before finishing its runs ({exc}); the rows "
                           "written so far are kept: run the sweep again to finish it") from None


def sweep(
    out_dir: str | Path,
    grid: sweeps.Grid | Mapping[str, Sequence[Any]],
    base: TrainConfig | None = None,
    model: str | LoadedModel = DEFAULT_MODEL,
    answers: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    callback_for: Callable[[sweeps.Planned], TrainingCallback | None] | None = None,
    log: Log = quiet,
    group: Any = None,
) -> SweepResult:
    """A grid of step-3 runs: ``grid`` maps fields of ``sweeps.GRID_FIELDS`` to value lists over ``base`` (or is
    a ``sweeps.Grid``). Each run is a normal ``run_dual_reward`` checkpointed in ``out_dir/<run name>``; its row
    is appended to ``out_dir/sweep.jsonl`` and passed to ``on_row`` as the run finishes (a notebook's table and
    figure fill in live). Runs with a row are skipped and an interrupted run resumes in its directory, found by
    its settings whatever an earlier grid named it (see :mod:`lazarus_nb.train.grid`), so calling this again, or
    with an axis added, continues a sweep; every setting is checked before anything trains.

    The model loads once (``model``: a name, or a LoadedModel to reuse). Each run starts from the base model:
    the previous run's adapters are removed (``lora.remove_adapters``: exact, and milliseconds where a reload
    takes seconds), and the model is left without adapters at the end.

    Ranks: under ``mlx.launch -n N`` (``group``, default ``mx.distributed.init()``: one process outside
    mlx.launch) rank r runs the grid's runs r, r + N, ...; every run is single-process, so its row is the row the
    sequential sweep writes. The ranks wait for each other at the end, then rank 0 writes the figures
    (``trade_off.png``, ``steps_to_readable.png``, and ``controls.png`` for a grid of the truth and control tasks:
    ``run.controls.compare_controls``) and every rank returns all rows.
    ``callback_for(planned)`` gives each trained run its training callback (the CLI's step table)."""
    t_start = time.perf_counter()
    grid = grid if isinstance(grid, sweeps.Grid) else sweeps.Grid.of(grid, base)
    group = group if group is not None else mx.distributed.init()
    rank, size = group.rank(), group.size()
    loaded = model if isinstance(model, LoadedModel) else load(model, log)
    grid.check(loaded.num_layers)
    planned = sweeps.plan(out_dir, grid, loaded.num_layers, peek_config(loaded.name))
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    mine = sweeps.shard(planned, rank, size)
    for line in report.sweep_plan(grid, root, planned, mine, rank, size):
        log(line)
    ran: list[str] = []
    baselines: dict[tuple, Evaluation] = {}  # the base model's evaluations, shared by the runs they fit
    try:
        for p in mine:
            if p.action == sweeps.DONE:
                continue
            log(report.sweep_run_start(p, len(planned), rank, size))
            row = _sweep_run(loaded, p, answers, callback_for(p) if callback_for else None, log, baselines)
            sweeps.append_row(root, row)
            ran.append(p.run.name)
            log(report.sweep_row_line(row, rank, size))
            if on_row is not None:
                on_row(row)
    finally:
        remove_adapters(loaded.model)
    if size > 1:
        _wait_for_ranks(group)
    rows = sweeps.grid_rows(grid, sweeps.read_rows(root), loaded.num_layers)
    controls = compare_controls(root, rows)
    files = {sweeps.ROWS: str(sweeps.rows_path(root))}
    if rank == 0:
        for name, fig in figures.sweep_figures(rows, controls).items():
            files[name] = str(plot_output.save(fig, root / name))
    skipped = [p.run.name for p in mine if p.action == sweeps.DONE]
    return SweepResult(root, grid, loaded.num_layers, rows, ran, skipped, files, rank, size,
                       time.perf_counter() - t_start, controls)
