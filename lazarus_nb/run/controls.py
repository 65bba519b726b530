"""Control tasks of a sweep: read each run's snapshots back from its directory and set the truth beside its
controls (docs/science.md "Control tasks"). A sweep with ``--label-map true operand problem permuted`` and a few
seeds is the experiment; :func:`compare_controls` is its analysis, and ``sweep`` reports it when the grid has
the truth and at least one control.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from lazarus_nb.data.labels import CONTROLS, LABEL_MAPS
from lazarus_nb.measure.selectivity import selectivity
from lazarus_nb.results.controls import SETS, ControlComparison, Curve
from lazarus_nb.train import checkpoint
from lazarus_nb.train.grid import GRID_FIELDS
from lazarus_nb.train.history import SNAPSHOT_SETS, History
from lazarus_nb.train.record import RunRecord


def _curve(histories: Mapping[int, History], layer: int, metric: str) -> Curve | None:
    """The seeds' accuracy at ``layer`` at the snapshot steps all of them have (matched budgets); None when a
    history lacks the set (written before training-set snapshots were recorded)."""
    steps = sorted(set.intersection(*({s.step for s in h.snapshots} for h in histories.values())))
    by_seed = {}
    for seed, h in sorted(histories.items()):
        i = h.layers.index(layer)
        at = {s.step: getattr(s, metric) for s in h.snapshots}
        if any(not at[step] for step in steps):
            return None
        by_seed[seed] = [at[step][i] for step in steps]
    return Curve(steps, by_seed)


def compare_controls(root: str | Path, rows: Sequence[Mapping[str, Any]]) -> list[ControlComparison]:
    """One comparison per setting of the other axes that has complete ``true`` runs and runs of at least one control
    (rows of other runs are ignored): curves per label map and set, selectivity of the truth against each control at
    every shared snapshot step (each set) and on the final held-out evaluation."""
    records = [(RunRecord.from_dict(row["config"]), row) for row in rows]
    # the other axes the sweep varies: a comparison names its values
    others = [f for f in GRID_FIELDS if f not in ("label_map", "seed")
              and len({json.dumps(getattr(r.train, f)) for r, _ in records}) > 1]
    groups: dict[str, dict[str, dict[int, tuple[RunRecord, Mapping[str, Any]]]]] = {}
    for record, row in records:
        if record.status != "complete" or not row.get("final"):
            continue
        cfg = record.train
        # a record's settings are resolved (classifier layer, adapted layers), so equal settings are equal dicts
        condition = json.dumps(asdict(replace(cfg, label_map=LABEL_MAPS[0], seed=0)), sort_keys=True)
        groups.setdefault(condition, {}).setdefault(cfg.label_map, {})[cfg.seed] = (record, row)
    out = []
    for by_map in groups.values():
        if LABEL_MAPS[0] not in by_map or not set(by_map) & set(CONTROLS):
            continue
        truth, truth_row = next(iter(by_map[LABEL_MAPS[0]].values()))
        layer, cfg = truth.classifier_layer, truth.train
        curves: dict[str, dict[str, Curve]] = {}
        for name, runs in by_map.items():
            histories = {seed: checkpoint.read_history(Path(root) / row["run"]) for seed, (_, row) in runs.items()}
            curves[name] = {k: c for k in SETS if (c := _curve(histories, layer, SNAPSHOT_SETS[k])) is not None}
        comparison = ControlComparison({f: getattr(cfg, f) for f in others}, layer, cfg.snapshot_count,
                                       truth_row["final"]["heldout_n"], curves)
        for control in (m for m in CONTROLS if m in by_map):
            comparison.selectivity[control] = {}
            for k in SETS:
                t, c = curves[LABEL_MAPS[0]].get(k), curves[control].get(k)
                if t is None or c is None:
                    continue
                steps = sorted(set(t.steps) & set(c.steps))
                found = (selectivity(step, comparison.n, _at(t, step), _at(c, step)) for step in steps)
                comparison.selectivity[control][k] = [s for s in found if s is not None]
            final = selectivity(
                cfg.steps, comparison.heldout_n,
                {seed: row["final"]["heldout_top1_accuracy"] for seed, (_, row) in by_map[LABEL_MAPS[0]].items()},
                {seed: row["final"]["heldout_top1_accuracy"] for seed, (_, row) in by_map[control].items()})
            if final is not None:
                comparison.final[control] = final
        out.append(comparison)
    return out


def _at(curve: Curve, step: int) -> dict[int, float]:
    """seed -> accuracy at ``step``."""
    i = curve.steps.index(step)
    return {seed: values[i] for seed, values in curve.by_seed.items()}
