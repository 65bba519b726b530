"""Notebook widgets: the dual-reward training panel and the logit-lens explorer.

Both are thin ipywidgets front ends over :mod:`lazarus_nb.workflow` and :mod:`lazarus_nb.figures`, and both
have a plain method that does the work (``TrainPanel.run()``, ``LensExplorer.show(prompt)``), so tests and
headless notebook runs exercise exactly what a click does.

Live figures
------------
A panel owns *one* figure (``plots.training_dashboard()``), redrawn in place and pushed into a
:class:`FigureSlot`: a single display slot inside the widget whose content is replaced, never appended
to. The slot stores the figure as :func:`plots.png_bytes` renders it, the same PNG a figure shows as the
last expression of a cell. Why not an IPython display handle (``display(fig, display_id=True)`` /
``handle.update(fig)``)? In JupyterLab a display handle cannot reach a figure that lives inside a widget:
the ``Output`` widget drops ``update_display_data`` messages (jupyter-widgets/ipywidgets#1844, visible in
its ``add()`` which keeps only display_data/stream/error), and output produced by a button callback outside
an ``Output`` widget is discarded altogether. Replacing the ``Output`` widget's ``outputs`` trait is widget
*state*, so it works the same from a button click, from a plain cell (``panel.run()``), from another
thread, and in a kernel with no browser attached (nbval, papermill). :class:`FigureSlot` keeps the
display-handle vocabulary (``update(fig)``), and shows how many times it was updated in a hidden
``<span class="lazarus-redraws" data-count="N">N</span>`` (what a browser test reads to see live redraws).

Errors the user can fix (bad hyperparameters, an unusable checkpoint directory) are
:class:`~lazarus_nb.errors.LazarusError` sentences; the widgets show them in their output area instead of
raising.
"""

from __future__ import annotations

import base64
import html
import time
import traceback
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import ipywidgets as w
from matplotlib.figure import Figure

from . import checkpoint, figures, plots, report
from .data import CANONICAL
from .errors import LazarusError
from .lens_grid import LensGrid
from .lens_grid import compare as lens_grids
from .lora import adapters, remove_adapters
from .models import LoadedModel
from .tokens import ClassTokens, class_tokens_from_ids, resolve_class_tokens
from .train import READABLE, History, TrainConfig, TrainEvent, snapshot_due
from .workflow import DualRewardResult, LensReport, run_dual_reward, run_lens

__all__ = ["EmergenceScrubber", "FigureSlot", "LensExplorer", "TrainPanel", "figure_output"]

_LABEL = {"description_width": "9.5em"}
_FIELD_WIDTH = "21em"


def figure_output(fig: Figure) -> dict[str, Any]:
    """An nbformat ``display_data`` output holding ``fig`` as a PNG (what an Output widget stores)."""
    png = plots.png_bytes(fig)
    width, height = (int(v) for v in fig.get_size_inches() * fig.dpi)
    return {
        "output_type": "display_data",
        "data": {"image/png": base64.b64encode(png).decode("ascii"),
                 "text/plain": f"<{type(fig).__name__} size {width}x{height}>"},
        "metadata": {},
    }


class FigureSlot:
    """One place in a widget where a figure is shown; ``update(fig)`` replaces it in place.

    ``output`` is an ``ipywidgets.Output`` (CSS class ``lazarus-figure``) whose ``outputs`` always hold
    exactly one PNG (see the module docstring for why this is not an IPython display handle). ``renders``
    counts updates; ``redraws`` is a hidden HTML widget showing that count to the browser. ``widget`` holds
    both.
    """

    def __init__(self, fig: Figure | None = None):
        self.output = w.Output()
        self.output.add_class("lazarus-figure")
        self.redraws = w.HTML(layout=w.Layout(display="none"))
        self.widget = w.VBox([self.output, self.redraws])
        self.fig = fig
        self.renders = 0
        self._count()
        if fig is not None:
            self.update(fig)

    def update(self, fig: Figure | None = None) -> None:
        if fig is not None:
            self.fig = fig
        if self.fig is None:
            return
        self.output.outputs = (figure_output(self.fig),)
        self.renders += 1
        self._count()

    def _count(self) -> None:
        self.redraws.value = f'<span class="lazarus-redraws" data-count="{self.renders}">{self.renders}</span>'

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _note(out: w.Output, text: str, error: bool = False) -> None:
    (out.append_stderr if error else out.append_stdout)(text.rstrip("\n") + "\n")


class RunPanel:
    """What the training and sweep panels share: a button that calls ``run()``, and errors shown in the panel
    (``progress``, ``status`` and ``output`` are the subclass's widgets)."""

    progress: w.IntProgress
    status: w.HTML
    output: w.Output

    def run(self) -> Any:
        raise NotImplementedError

    def _on_click(self, _button: Any) -> None:
        try:
            self.run()
        except Exception:  # a button callback has nowhere else to report: show it in the panel
            self.progress.bar_style = "danger"
            _note(self.output, traceback.format_exc(), error=True)

    def _fail(self, message: str) -> None:  # returns None so run() can `return self._fail(...)`
        self.progress.bar_style = "danger"
        self.status.value = f"<span style='color:#b00020'>{html.escape(message)}</span>"
        _note(self.output, f"Error: {message}", error=True)
        return None


class TrainPanel(RunPanel):
    """Hyperparameters, a Train button, a progress bar and a live dashboard for dual-reward training.

    ``run()`` trains the configuration currently in the fields (the button calls the same method) and
    returns the :class:`~lazarus_nb.workflow.DualRewardResult`, or None after showing a
    :class:`LazarusError` sentence in :attr:`output`. Every run starts from the base model: adapters left on
    ``loaded.model`` by a previous run are removed first, and the trained adapters stay on the model
    afterwards. With ``checkpoint`` set, the run is saved there (``force`` overwrites a previous checkpoint).

    Attributes: ``progress`` (IntProgress, ``max`` = steps), ``dashboard`` (:class:`plots.Dashboard`; the
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
    ):
        self.loaded = loaded
        self.base_config = config or TrainConfig()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.force = force
        self.answers = answers
        self.refresh_every = max(1, int(refresh_every))  # loss-curve refresh interval in steps
        self.min_refresh_seconds = min_refresh_seconds  # ... but never more often than this
        self.result: DualRewardResult | None = None
        c = self.base_config
        n = loaded.num_layers
        layer = c.classifier_layer if c.classifier_layer is not None else loaded.default_classifier_layer

        def field(cls: type, value: Any, description: str, width: str = _FIELD_WIDTH, **kw: Any) -> w.Widget:
            return cls(value=value, description=description, style=_LABEL, layout=w.Layout(width=width), **kw)

        self.steps = field(w.IntText, c.steps, "steps")
        self.classifier_layer = field(w.IntSlider, min(max(layer, 0), n - 1), "classifier layer", width="27em",
                                      min=0, max=n - 1)
        self.cls_weight = field(w.FloatText, c.cls_weight, "cls_weight (0-1)", step=0.05)
        self.learning_rate = field(w.FloatText, c.learning_rate, "learning rate", step=1e-4)
        self.lora_rank = field(w.IntText, c.lora_rank, "LoRA rank")
        self.num_samples = field(w.IntText, c.num_samples, "training samples")
        self.seed = field(w.IntText, c.seed, "seed")
        # stop_when_readable: the switch, and the accuracy it waits for (kept when the switch is off)
        self.stop_when_readable = w.Checkbox(value=c.stop_when_readable is not None, description="stop when readable",
                                             indent=False, layout=w.Layout(width=_FIELD_WIDTH))
        self.stop_accuracy = field(w.FloatText, c.stop_when_readable or READABLE, "readable top-1", step=0.05)
        self.button = w.Button(description="Train", button_style="primary", icon="play",
                               tooltip="Train the dual-reward adapter with these settings")
        self.progress = w.IntProgress(value=0, min=0, max=max(c.steps, 1), description="progress",
                                      style=_LABEL, layout=w.Layout(width="38em"))
        self.status = w.HTML(value="ready")
        self.output = w.Output(layout=w.Layout(max_height="24em", overflow="auto"))
        self.dashboard = plots.training_dashboard()
        self.figure = FigureSlot(self.dashboard.fig)
        for name in ("steps", "classifier_layer", "cls_weight", "learning_rate", "lora_rank", "num_samples",
                     "seed", "stop_when_readable", "stop_accuracy", "button", "progress", "status", "output"):
            getattr(self, name).add_class(f"lazarus-{name.replace('_', '-')}")
        self.button.on_click(self._on_click)

        fields = [self.steps, self.classifier_layer, self.cls_weight, self.learning_rate, self.lora_rank,
                  self.num_samples, self.seed, self.stop_when_readable, self.stop_accuracy]
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

    # ------------------------------------------------------------------------------------------ config

    def config(self) -> TrainConfig:
        """The TrainConfig in the fields (the constructor's config with the panel's values applied)."""
        return replace(
            self.base_config,
            steps=int(self.steps.value),
            classifier_layer=int(self.classifier_layer.value),
            cls_weight=float(self.cls_weight.value),
            learning_rate=float(self.learning_rate.value),
            lora_rank=int(self.lora_rank.value),
            num_samples=int(self.num_samples.value),
            seed=int(self.seed.value),
            stop_when_readable=float(self.stop_accuracy.value) if self.stop_when_readable.value else None,
        )

    # --------------------------------------------------------------------------------------------- run

    def run(self) -> DualRewardResult | None:
        """Train the current configuration; the result, or None with the error sentence in ``output``."""
        self.output.outputs = ()
        try:
            cfg = self.config()
            cfg.check(self.loaded.num_layers)  # one sentence per bad value, before the model is touched
        except LazarusError as exc:
            return self._fail(str(exc))
        self._start(cfg)
        try:
            result = run_dual_reward(self.loaded, cfg, output=self.checkpoint, force=self.force,
                                     callback=self._on_event, answers=self.answers)
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
        self.status.value = "evaluating the base model (baseline)..."
        self._draw()

    def _on_event(self, event: TrainEvent) -> None:
        if event.kind == "step" and event.log is not None:
            log = event.log
            self.history.steps.append(log)
            self.progress.value = event.step
            self.status.value = (f"step {event.step}/{event.total_steps} &middot; loss {log.total:.3f} "
                                 f"(classification {log.cls_loss:.3f}, answer {log.ans_loss:.3f})")
            due = event.step % self.refresh_every == 0
            recent = time.monotonic() - self._last_draw < self.min_refresh_seconds
            every = self._running.snapshot_every if self._running else 0
            if due and not recent and not snapshot_due(event.step, event.total_steps, every):
                self._draw()  # loss refresh (a snapshot right after this step redraws anyway)
        elif event.kind == "snapshot" and event.snapshot is not None:
            self.history.snapshots.append(event.snapshot)
            if event.step == event.total_steps:
                self.status.value = "final evaluation..."
            self._draw()
        elif event.kind == "stop":  # the snapshot just drawn was the run's last
            self.status.value = f"readable at step {event.step}: stopping early; final evaluation..."

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
        self.status.value = (f"done: {result.state.step} steps in {result.state.seconds:.1f} s "
                             f"{'(' + html.escape(early) + ') ' if early else ''}&middot; "
                             f"canonical {b.canonical_correct}/{n} &rarr; {f.canonical_correct}/{n}")
        _note(self.output, "\n".join(report.panel_summary(result)))

    # ----------------------------------------------------------------------------------------- display

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


GRID_TAB = 1  # LensExplorer's tab index of the logit-lens grid


def _as_class_tokens(loaded: LoadedModel, class_tokens: ClassTokens | Mapping[str, int] | None) -> ClassTokens:
    if class_tokens is None:
        return resolve_class_tokens(loaded.tokenizer)
    if isinstance(class_tokens, ClassTokens):
        return class_tokens
    return class_tokens_from_ids(loaded.tokenizer, class_tokens)


class LensExplorer:
    """Pick a canonical prompt or type one: the logit lens of that prompt over every layer.

    Two tabs. The first shows the probability of each class token per layer (``figures.prompt_lens_figure``,
    one line per class) and the top tokens of the lens at the classifier layer, both from one
    ``workflow.run_lens`` report (:attr:`report`). The second is the classic logit-lens grid of the prompt
    (``lens_grid.compare``: layers x prompt positions, each cell the lens's top-1 token coloured by its
    probability; on an adapted model the base model's grid beside the adapted one's), computed when that tab is
    open (:meth:`show_grid`; :attr:`grids`, :attr:`grid_fig`). Works on any loaded model, base or adapted.
    ``class_tokens``: the ids to read (a checkpoint's ``config["class_tokens"]`` mapping, a
    :class:`ClassTokens`, or None to resolve them from the tokenizer).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        class_tokens: ClassTokens | Mapping[str, int] | None = None,
        classifier_layer: int | None = None,
        top_k: int = 8,
        title: str | None = None,
    ):
        self.loaded = loaded
        self.class_tokens = _as_class_tokens(loaded, class_tokens)
        layer = loaded.default_classifier_layer if classifier_layer is None else int(classifier_layer)
        if not 0 <= layer < loaded.num_layers:
            raise LazarusError(f"classifier layer must be in 0..{loaded.num_layers - 1}, got {layer}")
        self.layer = layer
        self.top_k = top_k
        self.title = title or ("adapted model" if adapters(loaded.model) else "base model")
        self.fig: Figure | None = None
        self.report: LensReport | None = None
        self.prompt: str | None = None  # the last prompt shown
        self.grids: list[LensGrid] = []  # the grid tab's data (base[, adapted]) for ``grid_prompt``
        self.grid_prompt: str | None = None
        self.grid_fig: Figure | None = None
        self.top: list[tuple[str, float]] = []
        self.dropdown = w.Dropdown(options=[(f"{s.prompt!r}  ({s.label})", s.prompt) for s in CANONICAL],
                                   value=None, description="canonical", style={"description_width": "6em"})
        self.text = w.Text(value="", placeholder="or type any prompt and press Enter", description="prompt",
                           continuous_update=False, style={"description_width": "6em"},
                           layout=w.Layout(width="34em"))
        self.slot = FigureSlot()
        self.table = w.HTML()
        self.grid_slot = FigureSlot()
        self.tabs = w.Tab(children=[w.HBox([self.slot.widget, self.table]), self.grid_slot.widget],
                          titles=("class tokens by layer", "logit-lens grid"), selected_index=0)
        self.output = w.Output()
        for name in ("dropdown", "text", "table", "tabs", "output"):
            getattr(self, name).add_class(f"lazarus-explorer-{name}")
        self.dropdown.observe(self._on_prompt, names="value")
        self.text.observe(self._on_prompt, names="value")
        self.tabs.observe(self._on_tab, names="selected_index")
        self.widget = w.VBox([
            w.HTML(f"<b>Logit-lens explorer</b> &middot; {html.escape(loaded.name)} ({html.escape(self.title)}), "
                   f"classifier layer {layer}"),
            w.HBox([self.dropdown, self.text]),
            self.tabs,
            self.output,
        ])
        self.dropdown.value = CANONICAL[0].prompt  # draws the first canonical prompt

    def _on_prompt(self, change: Any) -> None:
        if not change.new:
            return
        try:
            self.show(change.new)
        except Exception:  # a widget callback has nowhere else to report: show it under the explorer
            self.output.append_stderr(traceback.format_exc())

    def _on_tab(self, change: Any) -> None:
        if change.new == GRID_TAB and self.prompt is not None and self.grid_prompt != self.prompt:
            try:
                self.show_grid()
            except Exception:  # a widget callback has nowhere else to report: show it under the explorer
                self.output.append_stderr(traceback.format_exc())

    def _readout(self, prompt: str) -> LensReport:
        """The lens of ``prompt`` at every layer: P(each class token, the ids of :attr:`class_tokens`) and
        the top tokens."""
        return run_lens(self.loaded, [prompt], self.class_tokens.words, None, self.top_k,
                        class_tokens=self.class_tokens)

    def show(self, prompt: str) -> Figure | None:
        """Lens ``prompt`` and update the display; returns the figure (None with a message if unusable: an
        empty prompt, or the one-sentence refusal of e.g. a prompt longer than the model may read)."""
        self.output.outputs = ()
        if not isinstance(prompt, str) or not prompt.strip():
            _note(self.output, "Error: type a prompt first (e.g. '7 * 8 = ')", error=True)
            return None
        try:
            self.report = self._readout(prompt)
        except LazarusError as exc:
            _note(self.output, f"Error: {exc}", error=True)
            return None
        at = self.report.prompts[0]["layers"][self.report.layers.index(self.layer)]
        expected = next((s.label for s in CANONICAL if s.prompt == prompt), None)
        note = f" (expected: {expected})" if expected else ""
        self.fig = figures.prompt_lens_figure(self.report, self.layer,
                                              title=f"Logit lens on {prompt!r}{note}, {self.title}")
        self.top = [(tok, p) for tok, p in at["top"]]
        self.slot.update(self.fig)
        self.table.value = self._table_html(at)
        self.prompt = prompt
        if self.tabs.selected_index == GRID_TAB:  # else the grid is computed when its tab is opened
            self.show_grid()
        return self.fig

    def show_grid(self, prompt: str | None = None) -> Figure | None:
        """The logit-lens grid of ``prompt`` (default: the prompt shown last) in the grid tab; returns its figure
        (None with the one-sentence message under the explorer if the prompt is unusable)."""
        prompt = self.prompt if prompt is None else prompt
        self.output.outputs = ()
        if not isinstance(prompt, str) or not prompt.strip():
            _note(self.output, "Error: type a prompt first (e.g. '7 * 8 = ')", error=True)
            return None
        try:
            self.grids = lens_grids(self.loaded, prompt)
        except LazarusError as exc:
            _note(self.output, f"Error: {exc}", error=True)
            return None
        self.grid_prompt = prompt
        self.grid_fig = figures.lens_grid_figure([self.grids])
        self.grid_slot.update(self.grid_fig)
        return self.grid_fig

    def _table_html(self, at: dict[str, Any]) -> str:
        """The top tokens (a class token starred: its rank is its place in the list) and P(class token), at
        the classifier layer; ``at`` is that layer's entry of the lens report."""
        starred = {t["rank"]: w for w, t in at["targets"].items()}
        rows = "".join(
            f"<tr><td>{i}</td><td><code>{html.escape(repr(tok))}</code>"
            f"{' &#9733; ' + html.escape(starred[i - 1]) if i - 1 in starred else ''}</td>"
            f"<td style='text-align:right'>{p:.2%}</td></tr>"
            for i, (tok, p) in enumerate(at["top"], 1)
        )
        cls = "".join(f"<tr><td>{html.escape(c)}</td><td style='text-align:right'>{t['prob']:.2e}</td></tr>"
                      for c, t in at["targets"].items())
        return (f"<div style='font-size:90%;padding-left:1em'><b>Top tokens at layer {self.layer}</b>"
                f"<table><tr><th>#</th><th>token</th><th>P</th></tr>{rows}</table>"
                f"<b>P(class token) at layer {self.layer}</b><table>{cls}</table></div>")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class EmergenceScrubber:
    """Scrub through training: a step slider (and a play button) over the snapshots of a training history.

    At the selected snapshot the figure shows, per class, P(own class token) at every layer (the classifier
    layer marked), next to the emergence heatmap with that step marked (``figures.scrub_figure``): which
    operation becomes readable first, and where. ``source`` is a :class:`~lazarus_nb.train.History` (e.g.
    ``result.state.history`` after training) or a checkpoint directory (its ``history.json``; the classifier
    layer then defaults to the checkpoint's). ``show(i)`` selects snapshot ``i`` (the slider calls it), moving
    the figure's artists in place and updating :attr:`slot` (whose hidden counter the browser test reads).

    Attributes: ``slider`` (IntSlider over snapshot indices), ``play`` (Play, linked to the slider in the
    browser), ``label`` (the selected step), ``figure`` (:class:`~lazarus_nb.emergence_plots.ScrubFigure`),
    ``slot`` (:class:`FigureSlot`), ``history``.
    """

    def __init__(self, source: History | str | Path, classifier_layer: int | None = None,
                 interval_ms: int = 700):
        if isinstance(source, History):
            self.history = source
        else:
            if classifier_layer is None:
                classifier_layer = checkpoint.read_record(source).classifier_layer
            self.history = checkpoint.read_history(source)
        if not self.history.snapshots:
            raise LazarusError("this training history has no logit-lens snapshots yet; train at least one step")
        self.classifier_layer = classifier_layer
        self.figure = figures.scrub_figure(self.history, classifier_layer)
        n = len(self.history.snapshots)
        # Play steps the value in the browser (jslink: no kernel round trip per tick), the slider follows and
        # syncs to the kernel, whose observer redraws; the interval leaves time for one PNG render per tick.
        self.play = w.Play(value=0, min=0, max=n - 1, step=1, interval=interval_ms, description="play",
                           show_repeat=False)
        self.slider = w.IntSlider(value=0, min=0, max=n - 1, step=1, description="snapshot", readout=False,
                                  continuous_update=False, style={"description_width": "6em"},
                                  layout=w.Layout(width="30em"))
        w.jslink((self.play, "value"), (self.slider, "value"))
        self.label = w.HTML()
        self.slot = FigureSlot()
        for name in ("play", "slider", "label"):
            getattr(self, name).add_class(f"lazarus-scrubber-{name}")
        self.slider.observe(lambda change: self.show(change.new), names="value")
        self.widget = w.VBox([w.HBox([self.play, self.slider, self.label]), self.slot.widget])
        self.widget.add_class("lazarus-scrubber")
        self.show(0)

    @property
    def step(self) -> int:
        """The training step of the selected snapshot."""
        return self.history.snapshots[self.figure.index].step

    def show(self, index: int) -> Figure:
        """Select snapshot ``index`` (as the slider does) and redraw; returns the (same) figure."""
        fig = self.figure.show(index)
        if self.slider.value != self.figure.index:
            self.slider.value = self.figure.index  # e.g. show(-1): its observer redraws the same snapshot once
            return fig
        n = len(self.history.snapshots)
        self.label.value = f"step <b>{self.step}</b> &middot; snapshot {self.figure.index + 1} of {n}"
        self.slot.update(fig)
        return fig

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
