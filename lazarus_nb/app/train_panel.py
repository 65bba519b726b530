"""The dual-reward training panel: the training settings as widgets, a Train button, live loss and emergence figures.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import ipywidgets as w

from lazarus_nb.app.config_widgets import config_field, read_config
from lazarus_nb.app.display import LABEL_STYLE, FigureSlot, RunPanel, seconds_text, show_note
from lazarus_nb.errors import LazarusError
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.model.lora import remove_adapters
from lazarus_nb.results.training import DualRewardResult
from lazarus_nb.run.steps import Log, quiet, run_dual_reward
from lazarus_nb.show import figures
from lazarus_nb.show import text as report
from lazarus_nb.show.plots import training as training_plots
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.history import History, Snapshot, StepLog
from lazarus_nb.train.loop import Trainer, snapshot_due
from lazarus_nb.train.state import TrainState

PANEL_FIELDS = ("steps", "classifier_layer", "cls_weight", "learning_rate", "lora_rank", "num_samples", "seed",
                "label_map", "stop_when_readable")
"""The TrainConfig fields the panel shows (widgets generated from the dataclass: ``app.config_widgets``); the rest
come from the config the panel was given."""


class TrainPanel(RunPanel, TrainingCallback):
    """Hyperparameters, a Train button, a progress bar and a live dashboard for dual-reward training.

    ``run()`` trains the configuration currently in the fields (the button calls the same method) and
    returns the :class:`~lazarus_nb.results.training.DualRewardResult`, or None after showing a
    :class:`LazarusError` sentence in :attr:`output`. Every run starts from the base model: adapters left on
    ``loaded.model`` by a previous run are removed first, and the trained adapters stay on the model
    afterwards. With ``checkpoint`` set, the run is saved there (``force`` overwrites a previous checkpoint).
    The panel is the run's :class:`~lazarus_nb.train.callbacks.TrainingCallback`: its steps and snapshots draw
    live. ``trainer``: what the run computes with (``train.Trainer``), the dual-reward run's by default.

    The status names the stage the run is in (evaluating the base model, training step by step, the final
    evaluation), and the last one reports the training time beside the wall time of the whole click.

    Attributes: ``progress`` (IntProgress, ``max`` = steps), ``dashboard`` (:class:`training_plots.Dashboard`; the
    same figure for the panel's lifetime), ``figure`` (:class:`FigureSlot` showing it), ``history`` (the
    current run's :class:`~lazarus_nb.train.History` as far as it got), ``output`` (log and error messages),
    ``status`` (one-line state), ``result`` (last successful run).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        config: TrainConfig | None = None,
        checkpoint: str | Path | None = None,
        force: bool = False,
        answers: bool = True,
        refresh_every: int = 5,
        min_refresh_seconds: float = 4.0,
        trainer: Trainer | None = None,
    ):
        self.loaded = loaded
        self.trainer = trainer
        self.base_config = config or TrainConfig()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.force = force
        self.answers = answers
        self.refresh_every = max(1, int(refresh_every))  # loss-curve refresh interval in steps
        self.min_refresh_seconds = min_refresh_seconds  # ... but never more often than this
        self.result: DualRewardResult | None = None
        c = self.base_config
        n = loaded.num_layers
        self.fields = {name: config_field(name, c, n, loaded.default_classifier_layer) for name in PANEL_FIELDS}
        for name, f in self.fields.items():  # panel.steps, panel.cls_weight, ...: the entries tests and users drive
            setattr(self, name, f.switch if f.switch is not None else f.value)
            if f.switch is not None:
                setattr(self, f"{name}_value", f.value)
        self.button = w.Button(description="Train", button_style="primary", icon="play",
                               tooltip="Train the dual-reward adapter with these settings")
        self.progress = w.IntProgress(value=0, min=0, max=max(c.steps, 1), description="progress",
                                      style=LABEL_STYLE, layout=w.Layout(width="38em"))
        self.status = w.HTML(value="ready")
        self.output = w.Output(layout=w.Layout(max_height="24em", overflow="auto"))
        self.dashboard = training_plots.training_dashboard()
        self.figure = FigureSlot(self.dashboard.fig)
        named = {**{n: f.value for n, f in self.fields.items() if f.switch is None},
                 **{n: f.switch for n, f in self.fields.items() if f.switch is not None},
                 **{f"{n}_value": f.value for n, f in self.fields.items() if f.switch is not None},
                 "button": self.button, "progress": self.progress, "status": self.status, "output": self.output}
        for name, widget in named.items():
            widget.add_class(f"lazarus-{name.replace('_', '-')}")
        self.button.on_click(self._on_click)

        fields = [widget for f in self.fields.values() for widget in f.widgets]
        where = f"checkpoint: {html.escape(str(self.checkpoint))}" if self.checkpoint else "no checkpoint is written"
        header = w.HTML(f"<b>Dual-reward training</b> &middot; {html.escape(loaded.name)} "
                        f"({n} layers) &middot; {where}")
        self.widget = w.VBox([
            header,
            w.HBox([w.VBox(fields[:4]), w.VBox(fields[4:7] + [self.button]), w.VBox(fields[7:])]),
            w.HBox([self.progress, self.status]),
            self.figure.widget,
            self.output,
        ])
        self.widget.add_class("lazarus-train-panel")
        self.history = History(list(range(n)))  # the run so far, as the trainer reports it
        self._running: TrainConfig | None = None
        self._last_draw = 0.0
        self._log: Log = quiet
        self._started = 0.0  # time.monotonic() when the current run was asked for

    # ------------------------------------------------------------------------------------------ config

    def config(self) -> TrainConfig:
        """The TrainConfig in the fields (the constructor's config with the panel's values applied)."""
        return read_config(self.base_config, self.fields)

    # --------------------------------------------------------------------------------------------- run

    def run(self, log: Log = quiet) -> DualRewardResult | None:
        """Train the current configuration; the result, or None with the error sentence in ``output``.

        ``log`` hears each stage of the status and a training step every tenth of the run, one line at a time:
        ``panel.run(log=print)`` in a cell shows the run's progress in that cell's own output, where a person
        running all cells looks (the button's run has no cell output to write to)."""
        self._started = time.monotonic()
        self._log = log
        self.output.outputs = ()
        try:
            cfg = self.config()
            cfg.check(self.loaded.num_layers)  # one sentence per bad value, before the model is touched
        except LazarusError as exc:
            return self._fail(str(exc))
        self._start(cfg)
        try:
            result = run_dual_reward(self.loaded, cfg, output=self.checkpoint, force=self.force,
                                     callback=self, answers=self.answers, trainer=self.trainer)
        except LazarusError as exc:
            return self._fail(str(exc))
        except KeyboardInterrupt:
            self._fail(f"interrupted after step {len(self.history.steps)}"
                       + ("; the last completed step was saved" if self.checkpoint else ""))
            raise
        finally:
            self.button.disabled = False
        self._finish(result)
        return result

    def _reset_model(self) -> None:
        remove_adapters(self.loaded.model)

    def _start(self, cfg: TrainConfig) -> None:
        self._reset_model()
        self._running = cfg
        self.history = History(list(range(self.loaded.num_layers)))
        self.button.disabled = True
        self.progress.max = cfg.steps
        self.progress.value = 0
        self.progress.bar_style = ""
        self._stage("evaluating the base model...")
        self._draw()

    def _stage(self, text: str, log: bool = True) -> None:
        """Show ``text`` as the status and, with ``log``, pass it to the run's log."""
        self.status.value = html.escape(text)
        if log:
            self._log(text)

    def on_step(self, log: StepLog, state: TrainState) -> None:
        total = state.config.steps
        self.history.steps.append(log)
        self.progress.value = log.step
        sparse = log.step % max(1, total // 10) == 0 or log.step == total
        self._stage(f"training: step {log.step}/{total} · loss {log.total:.3f} (classification "
                    f"{log.cls_loss:.3f}, answer {log.ans_loss:.3f})", log=sparse)
        due = log.step % self.refresh_every == 0
        recent = time.monotonic() - self._last_draw < self.min_refresh_seconds
        every = self._running.snapshot_every if self._running else 0
        if due and not recent and not snapshot_due(log.step, total, every):
            self._draw()  # loss refresh (a snapshot right after this step redraws anyway)

    def on_snapshot(self, snapshot: Snapshot, seconds: float, state: TrainState) -> None:
        self.history.snapshots.append(snapshot)
        if state.step == 0:  # the base model's snapshot: the first step (and its compilation) is next
            self._stage(f"training: step 0/{state.config.steps}...")
        elif state.step == state.config.steps:
            self._final_evaluation("final evaluation...")
        self._draw()

    def on_stop(self, state: TrainState) -> None:  # the snapshot just drawn was the run's last
        self._final_evaluation(f"readable at step {state.step}: stopping early; final evaluation...")

    def _final_evaluation(self, text: str) -> None:
        self.progress.bar_style = "info"  # the bar is full, the run is not: the colour tells them apart
        self._stage(text)

    def _draw(self) -> None:
        layer = self._running.classifier_layer if self._running else None
        self.figure.update(figures.update_dashboard(self.dashboard, self.history, layer))
        self._last_draw = time.monotonic()

    def _finish(self, result: DualRewardResult) -> None:
        self.result = result
        hist, seen = result.state.history, self.history
        self.history = hist
        if (len(hist.steps), len(hist.snapshots)) != (len(seen.steps), len(seen.snapshots)):
            self._draw()  # e.g. a resumed history; normally the last snapshot already drew everything
        self.progress.value = result.state.step  # the configured steps, or where stop_when_readable stopped
        self.progress.bar_style = "success"
        b, f = result.baseline, result.final
        n = len(f.canonical)
        early = report.stopped(result.state)
        wall = time.monotonic() - self._started
        self._stage(f"done: {result.state.step} steps, training {seconds_text(result.state.seconds)}, "
                    f"{seconds_text(wall)} in all {'(' + early + ') ' if early else ''}· "
                    f"canonical {b.canonical_correct}/{n} → {f.canonical_correct}/{n}")
        show_note(self.output, "\n".join(report.panel_summary(result)))

    # ----------------------------------------------------------------------------------------- display

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
