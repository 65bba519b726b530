"""Sweeps: a grid of dual-reward runs, each a normal run in its own directory, and ``sweep.jsonl``, one JSON row
per finished run. ``run.sweep.sweep`` runs a grid; this module owns everything else about it, with no mlx-lm
import, so the CLI checks a grid (and a sweep directory it would resume) before loading anything:

* **the grid** (:class:`Grid`): value lists for any of :data:`GRID_FIELDS` over a base ``TrainConfig``,
  expanded into ordered :class:`Run` s (the first field varies slowest) with deterministic names
  (``cls_weight=0.2,seed=1``: every field the grid names, in :data:`GRID_FIELDS` order), each run's settings
  checked by ``TrainConfig.check`` before anything trains;
* **a run's identity** (:func:`settings_key`): a run is its settings, not its name. A name only says which
  fields the grid varies, so one run has several (``cls_weight=0`` becomes ``cls_weight=0,seed=0`` once a seed
  axis is added); its key is a hash of every training setting, the model's defaults filled in, and is computed
  afresh from each row's ``config`` and each checkpoint's ``config.json``, never read from a file;
* **the rows** (:func:`read_rows`, :func:`append_row`, :func:`make_row`): ``sweep.jsonl`` is this module's
  file. A row is ``run`` (the run's directory: the name it was first trained under, which a later grid that
  reuses the run does not change), ``config`` (the run's ``config.json``, a ``RunRecord``),
  ``final`` (the ``final`` block of ``introspect dual-reward --json``), ``steps_to_readable``, ``seconds``
  (wall time of this process's part of the run: training and both evaluations) and, when the result has it,
  ``stop_reason``. Appends hold an exclusive ``flock`` and write one whole line, so rows of several ranks
  never interleave; an append cut short by a crash (a last line without its newline) is cut off by the next
  append and ignored by readers. A sweep's result (``sweep --json``) names the grid's runs by this grid's names
  (``runs``, ``ran``, ``skipped``, ``missing``); its ``rows`` keep the names they were written under;
* **resuming** (:func:`plan`): what a sweep does with each run of its grid, from what ``DIR`` holds, matched by
  key whatever the row or directory is called:

  - a row in ``sweep.jsonl``: ``done``, skipped (its row and directory kept);
  - a checkpoint still ``running`` or ``interrupted``: ``resume`` in its directory (``run_dual_reward(resume=
    True)`` goes on from its last saved step with exactly the batches an uninterrupted run would have used);
  - a ``complete`` checkpoint but no row (the process stopped between the run's last save and its row):
    ``resume`` too: training has nothing left to do, both evaluations run again (they are deterministic, so
    the row holds the numbers the uninterrupted run would have written) and the row is appended. Cheaper
    than training again, and no trained run is thrown away;
  - a ``diverged`` checkpoint but no row: ``diverged``: its row is written from the checkpoint (``final``
    and ``steps_to_readable`` null; ``config.status`` says why) without training it again (it would
    diverge again: same seed, same batches). A run that diverges during the sweep gets the same row, and
    the sweep goes on with the next run;
  - nothing: ``new``, in ``DIR/<its name>``.

  A row or checkpoint under a new run's name but with other settings (say, the same ``DIR`` swept with other
  ``--steps``) is refused with one sentence rather than mixed into the results;
* **ranks** (:func:`shard`): rank r of N takes runs r, r + N, ... of the whole grid, whatever is already
  done, so the ranks need not talk to agree on who runs what;
* **grouping rows for the figures** (:func:`series`, :func:`spread`): the error bars are over seeds.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
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
from lazarus_nb.model.layers import default_classifier_layer
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


@functools.cache  # get_type_hints is slow, and every run key asks for every field
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


def _comparable(config: TrainConfig, num_layers: int) -> dict[str, Any]:
    """A run's settings as they decide its result: the classifier-layer default filled in, the adapted blocks
    as a sorted list (None = all), a float field's whole number as a float (1 and 1.0 are one setting). Not
    checked against ``num_layers``: a row of another model is only another run."""
    d = asdict(config)
    if d["classifier_layer"] is None:
        d["classifier_layer"] = default_classifier_layer(num_layers)
    d["lora_layers"] = sorted(set(d["lora_layers"])) if d["lora_layers"] is not None else list(range(num_layers))
    return {k: float(v) if v is not None and _kind(k) is float else v for k, v in d.items()}


def settings_key(config: TrainConfig, num_layers: int) -> str:
    """The identity of a run with these settings on a model of ``num_layers`` blocks: a short hash of every
    training setting (module docstring), the same for a grid's run and for the record it trained."""
    text = json.dumps(_comparable(config, num_layers), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _row_record(row: Mapping[str, Any]) -> RunRecord:
    try:
        return RunRecord.from_dict(row["config"])
    except (ValueError, TypeError, KeyError) as exc:
        raise LazarusError(f"the row of {row['run']} in {ROWS} holds no run record ({exc}); remove that line to "
                           "train the run again") from None


def row_key(row: Mapping[str, Any], num_layers: int) -> str:
    """The :func:`settings_key` of a row's run, from its ``config``; one sentence for a row without a run record."""
    return settings_key(_row_record(row).train, num_layers)


@dataclass(frozen=True)
class Run:
    """One run of a grid: its place in the grid's order, its name, its grid values and settings."""

    index: int
    name: str
    values: dict[str, Any]
    config: TrainConfig

    def key(self, num_layers: int) -> str:
        """The run's :func:`settings_key` (its identity in a sweep directory)."""
        return settings_key(self.config, num_layers)


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
            config = replace(self.base, **values)
            out.append(Run(i, self.name(config), values, config))
        return out

    def name(self, config: TrainConfig) -> str:
        """The name this grid gives the run with ``config``: ``cls_weight=0,seed=1``."""
        return ",".join(f"{k}={value_text(getattr(config, k))}" for k in self.axes)

    def row_name(self, row: Mapping[str, Any]) -> str:
        """The name this grid gives a row's run (the row's own ``run`` is the name it was trained under)."""
        return self.name(_row_record(row).train)

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


def make_row(path: Path, record: Mapping[str, Any], result: Mapping[str, Any] | None, seconds: float,
             ) -> dict[str, Any]:
    """The row of the run finished in directory ``path``: ``record`` is its ``config.json`` object, ``result`` its
    ``DualRewardResult.to_dict()`` (None for a diverged run: no final evaluation)."""
    row: dict[str, Any] = {"run": path.name, "config": dict(record),
                           "final": result["final"] if result else None,
                           "steps_to_readable": result["steps_to_readable"] if result else None,
                           "steps_to_readable_train": result.get("steps_to_readable_train") if result else None,
                           "seconds": seconds}
    if result and "stop_reason" in result:
        row["stop_reason"] = result["stop_reason"]
    return row


def grid_rows(grid: Grid, rows: Iterable[Mapping[str, Any]], num_layers: int) -> list[dict[str, Any]]:
    """The rows of ``grid``'s runs (matched by key, whatever a row's name), in the grid's order (the last row of
    a run if it has several; rows of other runs, e.g. an earlier grid's other settings, are left out)."""
    by_key = {row_key(r, num_layers): dict(r) for r in rows}
    return [by_key[key] for run in grid.runs() if (key := run.key(num_layers)) in by_key]


def missing_runs(grid: Grid, rows: Iterable[Mapping[str, Any]], num_layers: int) -> list[str]:
    """The names of ``grid``'s runs that have none of ``rows``."""
    done = {row_key(r, num_layers) for r in rows}
    return [run.name for run in grid.runs() if run.key(num_layers) not in done]


@dataclass(frozen=True)
class Planned:
    """What the sweep does with ``run``: ``action`` is NEW, RESUME, DONE or DIVERGED; ``path`` is the run's
    directory (an earlier grid's name for a run found there); ``steps_completed`` is its checkpoint's (0 for a new
    run)."""

    run: Run
    action: str
    path: Path
    steps_completed: int = 0


def _checkpoints(root: Path, num_layers: int) -> dict[str, tuple[Path, RunRecord]]:
    """The run checkpoints directly in ``root`` by key (of several with one key, the furthest trained). A
    directory whose record cannot be read is left out: one under a run's name is refused by :func:`plan`."""
    found: dict[str, tuple[Path, RunRecord]] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.iterdir()):
        # dot directories are a checkpoint save's temporary siblings (checkpoint._atomic_dir_write)
        if path.name.startswith(".") or not (path / checkpoint.CONFIG).is_file():
            continue
        try:
            record = RunRecord.read(path / checkpoint.CONFIG)
        except LazarusError:
            continue
        key = settings_key(record.train, num_layers)
        if key not in found or record.steps_completed > found[key][1].steps_completed:
            found[key] = (path, record)
    return found


def check_dir(out_dir: str | Path, grid: Grid, num_layers: int) -> Path:
    """Refuse (one sentence) a sweep directory that is a file, or that holds files but nothing of a sweep: no
    rows, nothing under a run's name, no checkpoint of one of the grid's runs."""
    def holds_sweep(root: Path) -> bool:
        keys = {run.key(num_layers) for run in grid.runs()}
        return (rows_path(root).exists() or any((root / run.name).exists() for run in grid.runs())
                or not keys.isdisjoint(_checkpoints(root, num_layers)))

    return files.check_output(out_dir, "dir", None, may_hold=holds_sweep, holds="files that are not a sweep's",
                              advice="choose another directory")


def _check_same(run: Run, saved: TrainConfig, where: Path, num_layers: int) -> None:
    want, have = _comparable(run.config, num_layers), _comparable(saved, num_layers)
    differ = [k for k in want if want[k] != have[k]]
    if differ:
        k = differ[0]
        raise LazarusError(f"'{where}' holds run {run.name} trained with {k} {have[k]!r}, but this sweep asks for "
                           f"{want[k]!r}; give this sweep another -o DIR")


def plan(out_dir: str | Path, grid: Grid, num_layers: int, model_config: Mapping[str, Any] | None = None,
         ) -> list[Planned]:
    """What a sweep of ``grid`` in ``out_dir`` does with each run (module docstring): its rows and checkpoints
    are found by key, whatever they are called. Checked before anything trains: one sentence for a directory that
    cannot be used, a row or checkpoint under a new run's name with other settings, a checkpoint of another model
    (``model_config``: the model's config.json, as ``checkpoint.check_adapter`` takes it) or with unreadable
    weights."""
    root = check_dir(out_dir, grid, num_layers)
    rows = read_rows(root)
    done = {row_key(r, num_layers): r for r in rows}  # the last row of a key
    named = {r["run"]: r for r in rows}
    saved = _checkpoints(root, num_layers)
    out = []
    for run in grid.runs():
        key = run.key(num_layers)
        if key in done:
            where, record, action = root / done[key]["run"], _row_record(done[key]), DONE
        elif key in saved:
            where, record = saved[key]  # given to check_adapter below: config.json is read once
            action = DIVERGED if record.status == "diverged" else RESUME
        else:
            where = root / run.name
            if run.name in named:
                _check_same(run, _row_record(named[run.name]).train, rows_path(root), num_layers)
            if checkpoint.is_checkpoint(where):
                _check_same(run, checkpoint.resumable_record(where).train, where, num_layers)
            checkpoint.check_writable(where)  # a file there, or a directory of something else
            out.append(Planned(run, NEW, where))
            continue
        # another model's run, or unreadable weights; a diverged run's weights may hold NaN and are never loaded
        if checkpoint.is_checkpoint(where) and record.status != "diverged":
            checkpoint.check_adapter(where, dict(model_config or {}), record)
        out.append(Planned(run, action, where, record.steps_completed))
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
