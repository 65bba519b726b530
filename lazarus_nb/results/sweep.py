"""A sweep's result: the grid's rows and what this process ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lazarus_nb.results.controls import ControlComparison
from lazarus_nb.train import grid as sweeps


@dataclass
class SweepResult:
    """What a sweep did and found (``to_dict()`` is ``sweep --json``): the grid's rows, in the grid's order."""

    output: Path
    grid: sweeps.Grid
    num_layers: int  # the model's: a run's key fills in its defaults
    rows: list[dict[str, Any]]  # the rows of the grid's runs in sweep.jsonl (all of them once every rank is done)
    # the grid's names (a row's "run" is its directory, an earlier grid's name for a run found there)
    ran: list[str]  # the runs whose rows this process wrote (trained, resumed, or a diverged checkpoint recorded)
    skipped: list[str]  # this process's runs that already had a row
    files: dict[str, str]  # file name -> path
    rank: int
    size: int  # ranks (processes) that shared the grid
    seconds: float
    # the truth beside its control tasks, one per setting of the other axes (a grid with label_map true and a control)
    controls: list[ControlComparison] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        """The grid's runs without a row (after an error on another rank, say)."""
        return sweeps.missing_runs(self.grid, self.rows, self.num_layers)

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "grid": {k: list(v) for k, v in self.grid.axes.items()},
                "runs": [run.name for run in self.grid.runs()], "rows": self.rows, "missing": self.missing,
                "ran": self.ran, "skipped": self.skipped, "files": self.files, "ranks": self.size,
                "seconds": self.seconds, "controls": [c.to_dict() for c in self.controls]}
