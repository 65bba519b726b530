"""Sweeps: a grid of dual-reward runs, each a normal run in its own directory, and ``sweep.jsonl``, one JSON row
per finished run. ``run.sweep.sweep`` runs a grid; this module owns everything else about it, with no mlx-lm
import, so the CLI checks a grid (and a sweep directory it would resume) before loading anything:

* **the grid** (:class:`Grid`): value lists for any of :data:`GRID_FIELDS` over a base ``TrainConfig``,
  expanded into ordered :class:`Run` s (the first field varies slowest) with deterministic directory names
  (``cls_weight=0.2,seed=1``: every field the grid names, in :data:`GRID_FIELDS` order), each run's settings
  checked by ``TrainConfig.check`` before anything trains;
* **the rows** (:func:`read_rows`, :func:`append_row`, :func:`make_row`): ``sweep.jsonl`` is this module's
  file. A row is ``run`` (the directory name), ``config`` (the run's ``config.json``, a ``RunRecord``),
  ``final`` (the ``final`` block of ``introspect dual-reward --json``), ``steps_to_readable``, ``seconds``
  (wall time of this process's part of the run: training and both evaluations) and, when the result has it,
  ``stop_reason``. Appends hold an exclusive ``flock`` and write one whole line, so rows of several ranks
  never interleave; an append cut short by a crash (a last line without its newline) is cut off by the next
  append and ignored by readers;
* **resuming** (:func:`plan`): what a sweep does with each run of its grid, from what ``DIR`` holds:

  - a row in ``sweep.jsonl``: ``done``, skipped;
  - a checkpoint still ``running`` or ``interrupted``: ``resume`` (``run_dual_reward(resume=True)`` goes on
    from its last saved step with exactly the batches an uninterrupted run would have used);
  - a ``complete`` checkpoint but no row (the process stopped between the run's last save and its row):
    ``resume`` too: training has nothing left to do, both evaluations run again (they are deterministic, so
    the row holds the numbers the uninterrupted run would have written) and the row is appended. Cheaper
    than training again, and no trained run is thrown away;
  - a ``diverged`` checkpoint but no row: ``diverged``: its row is written from the checkpoint (``final``
    and ``steps_to_readable`` null; ``config.status`` says why) without training it again (it would
    diverge again: same seed, same batches). A run that diverges during the sweep gets the same row, and
    the sweep goes on with the next run;
  - nothing: ``new``.

  A row or checkpoint whose settings are not the grid's (say, the same ``DIR`` swept with other ``--steps``)
  is refused with one sentence rather than mixed into the results;
* **ranks** (:func:`shard`): rank r of N takes runs r, r + N, ... of the whole grid, whatever is already
  done, so the ranks need not talk to agree on who runs what;
* **grouping rows for the figures** (:func:`series`, :func:`spread`): the error bars are over seeds.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints

from lazarus_nb import files
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.record import RunRecord

GRID_FIELDS: tuple[str, ...] = ("cls_weight", "classifier_layer", "seed", "label_map", "lora_rank", "learning_rate")
"""The TrainConfig fields a sweep can vary, in the order of the run names and of the expansion (first slowest)."""


ROWS = "sweep.jsonl"
"""The rows file in a sweep directory."""


NEW, RESUME, DONE, DIVERGED = "new", "resume", "done", "diverged"
"""What :func:`plan` says a sweep does with a run (see the module docstring)."""


def value_text(value: Any) -> str:
    """A grid value as run names and labels show it: ``0.2``, ``1`` (for 1.0), ``0.0005``, ``permuted``."""
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _kind(name: str) -> type:
    """The Python type of a TrainConfig field (``int | None`` -> int)."""
    hint = get_type_hints(TrainConfig)[name]
    if isinstance(hint, types.UnionType):
        hint = next(t for t in get_args(hint) if t is not type(None))
    return hint


def _coerce(name: str, value: Any) -> Any:
    """``value`` as the field's type (1 -> 1.0 for a float field, 8.0 -> 8 for an int field); one sentence if it
    is not one."""
    kind = _kind(name)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is float and number:
        return float(value)
    if kind is int and number and float(value).is_integer():
        return int(value)
    if kind is str and isinstance(value, str):
        return value
    what = {float: "a number", int: "an integer", str: "a word"}[kind]
    raise SettingError(name, f"{{field}} values must each be {what}, got {value!r}")


@dataclass(frozen=True)
class Run:
    """One run of a grid: its place in the grid's order, its directory name, its grid values and settings."""

    index: int
    name: str
    values: dict[str, Any]
    config: TrainConfig


@dataclass(frozen=True)
class Grid:
    """Value lists (``axes``, in :data:`GRID_FIELDS` order) over ``base``; build it with :meth:`of`."""

    axes: dict[str, tuple[Any, ...]]
    base: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def of(cls, axes: Mapping[str, Iterable[Any]], base: TrainConfig | None = None) -> Grid:
        """The grid of ``axes`` (field -> values) over ``base``, its values coerced to the fields' types; one
        sentence (SettingError on the field) for an empty grid, a field that cannot be swept, no values, a
        repeated value."""
        unknown = [k for k in axes if k not in GRID_FIELDS]
        if unknown:
            raise SettingError(GRID_FIELDS, f"'{unknown[0]}' cannot be swept; a sweep varies any of {{field}}")
        if not axes:
            raise SettingError(GRID_FIELDS, "the sweep grid is empty: give one or more values for at least one of "
                                            "{field}")
        clean: dict[str, tuple[Any, ...]] = {}
        for key in (k for k in GRID_FIELDS if k in axes):
            if isinstance(axes[key], (str, bytes)) or not isinstance(axes[key], Iterable):
                raise SettingError(key, f"{{field}} needs a list of values, got {axes[key]!r}")
            values = [_coerce(key, v) for v in axes[key]]
            if not values:
                raise SettingError(key, "{field} gives no values; give at least one")
            twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if twice is not None:
                raise SettingError(key, f"{{field}} gives {value_text(twice)} twice; each run of a sweep is one "
                                        "directory, so give each value once")
            clean[key] = tuple(values)
        return cls(clean, replace(base) if base is not None else TrainConfig())

    def runs(self) -> list[Run]:
        """Every run, the first field slowest (``cls_weight`` x ``seed``: all seeds of one weight, then the next)."""
        out = []
        for i, combo in enumerate(itertools.product(*self.axes.values())):
            values = dict(zip(self.axes, combo))
            run_name = ",".join(f"{k}={value_text(v)}" for k, v in values.items())
            out.append(Run(i, run_name, values, replace(self.base, **values)))
        return out

    def check(self, num_layers: int | None) -> None:
        """``TrainConfig.check`` of every run (layer ranges when ``num_layers`` is known): one sentence for the
        first bad setting, before anything trains."""
        for run in self.runs():
            run.config.check(num_layers)

    def describe(self) -> str:
        """``cls_weight 0, 0.5 x seed 0, 1`` (for the summary)."""
        return " x ".join(f"{k} {', '.join(map(value_text, v))}" for k, v in self.axes.items())


def shard(items: Sequence[Any], rank: int, size: int) -> list[Any]:
    """Rank ``rank`` of ``size``: items rank, rank + size, ... (every item exactly once over the ranks)."""
    return list(items)[rank::size]


def rows_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / ROWS


def read_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``DIR/sweep.jsonl`` in file order ([] without the file). A last line without its newline is
    an append cut short and is ignored; any other line that is not a row is one sentence (LazarusError)."""
    path = rows_path(out_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise LazarusError(f"cannot read the sweep rows '{path}': {exc}") from None
    rows = []
    for number, line in enumerate(text.split("\n")[:-1], 1):  # [-1]: "" or a cut-short append
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LazarusError(f"line {number} of '{path}' is not JSON ({exc.msg}); remove that line (its run "
                               "trains again) to continue the sweep") from None
        if not isinstance(row, dict) or not isinstance(row.get("run"), str):
            raise LazarusError(f"line {number} of '{path}' is not a sweep row (no 'run'); remove that line to "
                               "continue the sweep")
        rows.append(row)
    return rows


def append_row(out_dir: str | Path, row: Mapping[str, Any]) -> None:
    """Append ``row`` to ``DIR/sweep.jsonl`` as one strict-JSON line, under an exclusive ``flock`` (several
    ranks append to one file) and synced to disk before the lock is released. A last line left without its
    newline by a crash is cut off first, so the new row starts on a line of its own."""
    line = (json.dumps(files.json_clean(dict(row)), allow_nan=False, ensure_ascii=False) + "\n").encode()
    path = rows_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:  # append mode: every write lands at the end, whoever else appended
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            content = fh.read()
            if content and not content.endswith(b"\n"):
                fh.truncate(content.rfind(b"\n") + 1)
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_row(run: Run, record: Mapping[str, Any], result: Mapping[str, Any] | None, seconds: float) -> dict[str, Any]:
    """The row of a finished run: ``record`` is its ``config.json`` object, ``result`` its
    ``DualRewardResult.to_dict()`` (None for a diverged run: no final evaluation)."""
    row: dict[str, Any] = {"run": run.name, "config": dict(record),
                           "final": result["final"] if result else None,
                           "steps_to_readable": result["steps_to_readable"] if result else None,
                           "seconds": seconds}
    if result and "stop_reason" in result:
        row["stop_reason"] = result["stop_reason"]
    return row


def grid_rows(grid: Grid, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``grid``'s runs, in the grid's order (the last row of a run if it has several; rows of
    other runs, e.g. an earlier grid in the same directory, are left out)."""
    by_run = {r["run"]: dict(r) for r in rows}
    return [by_run[run.name] for run in grid.runs() if run.name in by_run]


@dataclass(frozen=True)
class Planned:
    """What the sweep does with ``run``: ``action`` is NEW, RESUME, DONE or DIVERGED; ``steps_completed`` is
    its checkpoint's (0 for a new run)."""

    run: Run
    action: str
    steps_completed: int = 0


def check_dir(out_dir: str | Path, grid: Grid) -> Path:
    """Refuse (one sentence) a sweep directory that is a file, or that holds files but nothing of a sweep."""
    def holds_sweep(root: Path) -> bool:
        return rows_path(root).exists() or any((root / run.name).exists() for run in grid.runs())

    return files.check_output(out_dir, "dir", None, may_hold=holds_sweep, holds="files that are not a sweep's",
                              advice="choose another directory")


def _comparable(config: TrainConfig, num_layers: int) -> dict[str, Any]:
    """A run's settings as they decide its result: the classifier-layer default filled in, the adapted blocks
    as a sorted list (None = all)."""
    d = asdict(config.for_model(num_layers))
    d["lora_layers"] = sorted(set(d["lora_layers"])) if d["lora_layers"] is not None else list(range(num_layers))
    return d


def _check_same(run: Run, saved: TrainConfig, where: Path, num_layers: int) -> None:
    want, have = _comparable(run.config, num_layers), _comparable(saved, num_layers)
    differ = [k for k in want if want[k] != have[k]]
    if differ:
        k = differ[0]
        raise LazarusError(f"'{where}' holds run {run.name} trained with {k} {have[k]!r}, but this sweep asks for "
                           f"{want[k]!r}; give this sweep another -o DIR")


def plan(out_dir: str | Path, grid: Grid, num_layers: int, model_config: Mapping[str, Any] | None = None,
         ) -> list[Planned]:
    """What a sweep of ``grid`` in ``out_dir`` does with each run (module docstring), checked before anything
    trains: one sentence for a directory that cannot be used, a row or checkpoint with other settings, a
    checkpoint of another model (``model_config``: the model's config.json, as ``checkpoint.check_adapter``
    takes it) or with unreadable weights."""
    root = check_dir(out_dir, grid)
    rows = {r["run"]: r for r in read_rows(root)}
    out = []
    for run in grid.runs():
        where = root / run.name
        if run.name in rows:
            try:
                record = RunRecord.from_dict(rows[run.name]["config"])
            except (ValueError, TypeError, KeyError) as exc:
                raise LazarusError(f"the row of {run.name} in '{rows_path(root)}' holds no run record ({exc}); "
                                   "remove that line to train the run again") from None
            _check_same(run, record.train, rows_path(root), num_layers)
            action = DONE
        elif checkpoint.is_checkpoint(where):
            record = checkpoint.resumable_record(where)  # given to check_adapter below: config.json is read once
            _check_same(run, record.train, where, num_layers)
            action = DIVERGED if record.status == "diverged" else RESUME
        else:
            checkpoint.check_writable(where)  # a file there, or a directory of something else
            out.append(Planned(run, NEW))
            continue
        # another model's run, or unreadable weights; a diverged run's weights may hold NaN and are never loaded
        if checkpoint.is_checkpoint(where) and record.status != "diverged":
            checkpoint.check_adapter(where, dict(model_config or {}), record)
        out.append(Planned(run, action, record.steps_completed))
    return out


@dataclass(frozen=True)
class Spread:
    """One number of one setting over its seeds: the mean (the point) and min..max (the error bar)."""

    mean: float
    lo: float
    hi: float
    n: int  # seeds with a value


def spread(values: Iterable[float | None]) -> Spread | None:
    """Mean and min..max of the values that were measured (None: not measured); None if none was."""
    v = [float(x) for x in values if x is not None]
    return Spread(sum(v) / len(v), min(v), max(v), len(v)) if v else None


def final(row: Mapping[str, Any], key: str) -> float | None:
    """A number of the row's ``final`` block (None for a diverged run, or a metric not measured)."""
    return (row.get("final") or {}).get(key)


def series(rows: Iterable[Mapping[str, Any]], inner: Sequence[str]) -> dict[str, dict[tuple, list[dict[str, Any]]]]:
    """Rows grouped for a figure: {series label: {values of the ``inner`` fields: the rows, one per seed}}.

    A series is one setting of the grid fields that are neither ``inner`` nor ``seed``; its label names those
    that differ between the series (``lora_rank=8``; "" when there is one series). Both levels are sorted."""
    outer = [f for f in GRID_FIELDS if f not in inner and f != "seed"]
    rows = list(rows)

    def key(row: Mapping[str, Any], names: Sequence[str]) -> tuple:
        return tuple(row["config"].get(f) for f in names)

    varying = [f for f in outer if len({row["config"].get(f) for row in rows}) > 1]
    out: dict[str, dict[tuple, list[dict[str, Any]]]] = {}
    for row in sorted(rows, key=lambda r: (key(r, varying), key(r, inner))):
        label = ",".join(f"{f}={value_text(row['config'].get(f))}" for f in varying)
        out.setdefault(label, {}).setdefault(key(row, inner), []).append(dict(row))
    return out
