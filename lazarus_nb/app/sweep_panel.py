"""The sweep panel of notebook 05: pick a grid, press Run, and watch the table and the trade-off figure fill in
as runs finish.

A thin ipywidgets front end over :func:`lazarus_nb.run.sweep.sweep` (the work), :mod:`lazarus_nb.show.text` (the
table, the CLI's) and :mod:`lazarus_nb.show.figures` (the trade-off figure, the one the CLI writes to
``trade_off.png``), shown through a :class:`~lazarus_nb.app.display.FigureSlot` (see :mod:`lazarus_nb.app.display`
for why a slot and not a display handle). ``SweepPanel.run()`` is what the button calls, so a headless notebook
run does exactly what a click does.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w

from lazarus_nb.app.cli_args import parse_values
from lazarus_nb.app.display import LABEL_STYLE, FigureSlot, RunPanel, seconds_text
from lazarus_nb.data.labels import LABEL_MAPS
from lazarus_nb.errors import LazarusError
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.results.sweep import SweepResult
from lazarus_nb.run.steps import Log, quiet
from lazarus_nb.run.sweep import sweep
from lazarus_nb.show import figures
from lazarus_nb.show import text as report
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.grid import GRID_FIELDS, Grid, Planned, Run, grid_rows, read_rows, row_key, value_text
from lazarus_nb.train.history import Snapshot, StepLog
from lazarus_nb.train.state import TrainState

_PICKED = ("classifier_layer", "label_map")  # picked from a list; the other fields are typed


_DESCRIPTIONS = {"cls_weight": "cls_weight", "classifier_layer": "classifier layer", "seed": "seeds",
                 "label_map": "label map", "lora_rank": "LoRA rank", "learning_rate": "learning rate"}


class SweepPanel(RunPanel):
    """One field per grid field (:data:`lazarus_nb.train.grid.GRID_FIELDS`): typed values (``0 0.2 0.4``) or, for
    the classifier layer and the label map, a multiple choice. A field left empty is not part of the grid (the
    run takes ``base``'s setting). Every combination is one run in ``out_dir``.

    ``run()`` sweeps the grid in the fields (the Run button calls it) and returns the
    :class:`~lazarus_nb.results.sweep.SweepResult`, or None after showing a :class:`LazarusError` sentence. Calling
    it again continues the same sweep: runs with a row are skipped, an interrupted one resumes.

    Attributes: ``progress`` (runs with a row, of the grid's), ``status``, ``table`` (the CLI's sweep table),
    ``figure`` (:class:`FigureSlot` with the trade-off figure, redrawn as each run finishes), ``rows`` (the
    grid's rows so far), ``output`` (error messages), ``result`` (the last finished sweep). Each field and control
    carries the CSS class ``lazarus-sweep-<name>`` (dashed: ``lazarus-sweep-cls-weight``,
    ``lazarus-sweep-status``), the panel ``lazarus-sweep-panel``.
    """

    def __init__(self, loaded: LoadedModel, out_dir: str | Path, base: TrainConfig | None = None,
                 grid: Mapping[str, Sequence[Any]] | None = None, answers: bool = True):
        self.loaded = loaded
        self.out_dir = Path(out_dir)
        self.base = base or TrainConfig()
        self.answers = answers
        self.rows: list[dict[str, Any]] = []
        self._grid: Grid | None = None  # the grid being swept (names the table's rows)
        self._order: dict[str, int] = {}  # run key -> its place in the grid (the table's order)
        self.result: SweepResult | None = None
        grid = dict(grid or {})
        layers = list(range(loaded.num_layers))
        self.fields: dict[str, w.Widget] = {}
        for name in GRID_FIELDS:
            values = list(grid.get(name, []))
            if name in _PICKED:
                options = layers if name == "classifier_layer" else list(LABEL_MAPS)
                widget = w.SelectMultiple(options=options, value=tuple(values), rows=min(len(options), 6),
                                          description=_DESCRIPTIONS[name], style=LABEL_STYLE)
            else:
                widget = w.Text(value=" ".join(map(value_text, values)), description=_DESCRIPTIONS[name],
                                placeholder=f"e.g. {self._example(name)}", style=LABEL_STYLE,
                                layout=w.Layout(width="24em"))
            widget.add_class(f"lazarus-sweep-{name.replace('_', '-')}")
            self.fields[name] = widget
        self.button = w.Button(description="Run sweep", button_style="primary", icon="play",
                               tooltip="Train every run of the grid that has no row yet")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="runs", style=LABEL_STYLE,
                                      layout=w.Layout(width="30em"))
        self.status = w.HTML(value="ready")
        self.table = w.HTML()
        self.figure = FigureSlot(figures.trade_off_figure([]))
        self.output = w.Output()
        for name in ("button", "progress", "status", "table", "output"):
            getattr(self, name).add_class(f"lazarus-sweep-{name}")
        self.button.on_click(self._on_click)
        typed = [f for n, f in self.fields.items() if n not in _PICKED]
        picked = [f for n, f in self.fields.items() if n in _PICKED]
        self.widget = w.VBox([
            w.HTML(f"<b>Sweep</b> &middot; {html.escape(loaded.name)} ({loaded.num_layers} layers) &middot; "
                   f"{html.escape(str(self.out_dir))} &middot; an empty field keeps the base setting"),
            w.HBox([w.VBox(typed + [self.button]), *picked]),
            w.HBox([self.progress, self.status]),
            self.table,
            self.figure.widget,
            self.output,
        ])
        self.widget.add_class("lazarus-sweep-panel")

    def _example(self, name: str) -> str:
        return {"cls_weight": "0 0.2 0.4 0.6 0.8 1", "seed": "0 1 2", "lora_rank": "8 16",
                "learning_rate": "5e-4 1e-3"}.get(name, "")

    # ------------------------------------------------------------------------------------------- the grid

    def grid(self) -> Grid:
        """The grid in the fields over ``base`` (one sentence for a bad value)."""
        axes: dict[str, list[Any]] = {}
        for name, widget in self.fields.items():
            values = list(widget.value) if name in _PICKED else parse_values(name, widget.value)
            if values:
                axes[name] = values
        return Grid.of(axes, self.base)

    # ------------------------------------------------------------------------------------------------ run

    def run(self, log: Log = quiet) -> SweepResult | None:
        """Sweep the grid in the fields; the result, or None with the error sentence in ``output``. ``log`` hears
        the sweep's progress lines (a cell passes ``print`` to see them in its own output, under the panel)."""
        started = time.monotonic()
        self.output.outputs = ()
        try:
            grid = self.grid()
            grid.check(self.loaded.num_layers)
        except LazarusError as exc:
            return self._fail(str(exc))
        layers = self.loaded.num_layers
        self.rows = grid_rows(grid, read_rows(self.out_dir), layers) if self.out_dir.is_dir() else []
        self._grid, self._order = grid, {run.key(layers): run.index for run in grid.runs()}
        self.progress.max, self.progress.value, self.progress.bar_style = len(grid.runs()), len(self.rows), ""
        self.button.disabled = True
        self._show()
        try:
            result = sweep(self.out_dir, grid, model=self.loaded, answers=self.answers, on_row=self._on_row,
                           callback_for=self._callback_for, log=log)
        except LazarusError as exc:
            return self._fail(str(exc))
        except KeyboardInterrupt:
            self._fail("interrupted; run the sweep again to continue it (the interrupted run resumes)")
            raise
        finally:
            self.button.disabled = False
        self.result, self.rows = result, result.rows
        self.progress.bar_style = "success"
        self.status.value = html.escape(self._summary(result, time.monotonic() - started))
        self._show()
        return result

    def _summary(self, result: SweepResult, seconds: float) -> str:
        """The status after a sweep: "done" only when every run of the grid has its row."""
        n = len(result.grid.runs())
        if result.missing:
            return (f"{len(result.rows)} of {n} runs have a row, {len(result.missing)} not yet: run the sweep "
                    f"again to finish them ({seconds_text(seconds)} in all)")
        every = "the grid's one run has its row" if n == 1 else f"all {n} runs have rows"
        if not result.ran:
            return f"nothing to train: {every}"
        earlier = f", {len(result.skipped)} had rows from earlier" if result.skipped else ""
        return f"done: {every} ({len(result.ran)} trained now{earlier}), {seconds_text(seconds)} in all"

    def _callback_for(self, planned: Planned) -> TrainingCallback:
        steps = RunSteps(self.status, planned.run, self.progress.max)
        steps.stage("evaluating the base model...")
        return steps

    def _on_row(self, row: dict[str, Any]) -> None:
        def key(r: Mapping[str, Any]) -> str:
            return row_key(r, self.loaded.num_layers)

        new = key(row)
        rows = [r for r in self.rows if key(r) != new] + [row]
        self.rows = sorted(rows, key=lambda r: self._order[key(r)])
        self.progress.value = len(self.rows)
        self._show()

    def _show(self) -> None:
        """The table and the trade-off figure of the rows so far."""
        text = "\n".join(report.sweep_table(self.rows, self._grid))
        self.table.value = f"<pre style='font-size:85%'>{html.escape(text)}</pre>"
        self.figure.update(figures.trade_off_figure(self.rows))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class RunSteps(TrainingCallback):
    """A sweep run's progress in the panel's status line, by stage: "run i of n: name · training: step s/steps",
    then "... · final evaluation..." once the last step's snapshot is drawn."""

    def __init__(self, status: w.HTML, run: Run, runs: int) -> None:
        self.status, self.run, self.runs = status, run, runs

    def stage(self, text: str) -> None:
        self.status.value = html.escape(f"run {self.run.index + 1} of {self.runs}: {self.run.name} · {text}")

    def on_step(self, log: StepLog, state: TrainState) -> None:
        self.stage(f"training: step {log.step}/{state.config.steps}")

    def on_snapshot(self, snapshot: Snapshot, seconds: float, state: TrainState) -> None:
        if state.step == 0:  # the base model's snapshot: the first step is next
            self.stage(f"training: step 0/{state.config.steps}...")
        elif state.step == state.config.steps:
            self.stage("final evaluation...")

    def on_stop(self, state: TrainState) -> None:
        self.stage(f"readable at step {state.step}: stopping early; final evaluation...")
