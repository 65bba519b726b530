"""The logit-lens explorer: pick or type a prompt, see the lens by layer (base beside adapted) and its grid.
"""

from __future__ import annotations

import html
import traceback
from collections.abc import Mapping
from typing import Any

import ipywidgets as w
from matplotlib.figure import Figure

from lazarus_nb.app.display import FigureSlot, show_note
from lazarus_nb.data.prompts import CANONICAL
from lazarus_nb.data.tokens import ClassTokens, class_tokens_from_ids, resolve_class_tokens
from lazarus_nb.errors import LazarusError
from lazarus_nb.measure.lens_grid import LensGrid
from lazarus_nb.measure.lens_grid import compare as lens_grids
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.model.lora import adapters
from lazarus_nb.results.lens import LayerRead, LensReport
from lazarus_nb.run.steps import run_lens
from lazarus_nb.show import figures
from lazarus_nb.show.format import prob, token

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
    ``run.steps.run_lens`` report (:attr:`report`). The second is the classic logit-lens grid of the prompt
    (``lens_grid.compare``: layers x prompt positions, each cell the lens's top-1 token coloured by its
    probability; on an adapted model the base model's grid beside the adapted one's), computed when that tab is
    open (:meth:`show_grid`; :attr:`grids`, :attr:`grid_fig`), at its own width (the tab scrolls sideways: a grid
    shrunk to the page has unreadable cells); while it is computed the tab says so rather than show the previous
    prompt's grid. Works on any loaded model, base or adapted.

    The controls always name the prompt the figure shows: :meth:`show` (from a cell, the dropdown or the text box)
    selects the prompt in the dropdown when it is a canonical one, else writes it in the text box and clears the
    dropdown.
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
        self.grid_slot = FigureSlot(natural_size=True)
        self.tabs = w.Tab(children=[w.HBox([self.slot.widget, self.table]), self.grid_slot.widget],
                          titles=("class tokens by layer", "logit-lens grid"), selected_index=0)
        self.output = w.Output()
        self._syncing = False  # set while show() moves the controls to its prompt: their observers stand by
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
        if not change.new or self._syncing:
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
            show_note(self.output, "Error: type a prompt first (e.g. '7 * 8 = ')", error=True)
            return None
        try:
            self.report = self._readout(prompt)
        except LazarusError as exc:
            show_note(self.output, f"Error: {exc}", error=True)
            return None
        at = self.report.prompts[0].at(self.layer)
        expected = next((s.label for s in CANONICAL if s.prompt == prompt), None)
        note = f" (expected: {expected})" if expected else ""
        self.fig = figures.prompt_lens_figure(self.report, self.layer,
                                              title=f"Logit lens on {prompt!r}{note}, {self.title}")
        self.top = list(at.top)
        self.slot.update(self.fig)
        self.table.value = self._table_html(at)
        self.prompt = prompt
        self._select(prompt)
        if self.tabs.selected_index == GRID_TAB:
            self.show_grid()
        elif self.grid_prompt != prompt:  # computed when its tab is opened; until then it must not show another's
            self.grid_slot.wait(f"the logit-lens grid of {prompt!r} is computed when this tab is opened")
        return self.fig

    def _select(self, prompt: str) -> None:
        """Set the dropdown and the text box to name ``prompt``, without their observers showing it again."""
        canonical = prompt in {value for _, value in self.dropdown.options}
        self._syncing = True
        try:
            self.dropdown.value = prompt if canonical else None
            self.text.value = "" if canonical else prompt
        finally:
            self._syncing = False

    def show_grid(self, prompt: str | None = None) -> Figure | None:
        """The logit-lens grid of ``prompt`` (default: the prompt shown last) in the grid tab; returns its figure
        (None with the one-sentence message under the explorer if the prompt is unusable). Another prompt than the
        one shown is shown first (:meth:`show`), so both tabs and the controls name the same prompt."""
        if prompt is not None and prompt != self.prompt:
            if self.show(prompt) is None:
                return None
            if self.grid_prompt == prompt:  # show() computed it: the grid tab is open
                return self.grid_fig
        prompt = self.prompt
        self.output.outputs = ()
        if not isinstance(prompt, str) or not prompt.strip():
            show_note(self.output, "Error: type a prompt first (e.g. '7 * 8 = ')", error=True)
            return None
        self.grid_slot.wait(f"computing the logit-lens grid of {prompt!r}...")
        try:
            self.grids = lens_grids(self.loaded, prompt)
        except LazarusError as exc:
            show_note(self.output, f"Error: {exc}", error=True)
            self.grid_slot.wait(f"no logit-lens grid of {prompt!r}: {exc}")
            return None
        self.grid_prompt = prompt
        self.grid_fig = figures.lens_grid_figure([self.grids])
        self.grid_slot.update(self.grid_fig)
        return self.grid_fig

    def _table_html(self, at: LayerRead) -> str:
        """The top tokens (a class token starred: its rank is its place in the list) and P(class token), at
        the classifier layer; ``at`` is that layer's reading in the lens report."""
        starred = {t.rank: w for w, t in at.targets.items()}
        rows = "".join(
            f"<tr><td>{i}</td><td><code>{html.escape(token(tok, None))}</code>"
            f"{' &#9733; ' + html.escape(starred[i - 1]) if i - 1 in starred else ''}</td>"
            f"<td style='text-align:right'>{prob(p)}</td></tr>"
            for i, (tok, p) in enumerate(at.top, 1)
        )
        cls = "".join(f"<tr><td>{html.escape(c)}</td><td style='text-align:right'>{prob(t.prob)}</td></tr>"
                      for c, t in at.targets.items())
        return (f"<div style='font-size:90%;padding-left:1em'><b>Top tokens at layer {self.layer}</b>"
                f"<table><tr><th>#</th><th>token</th><th>P</th></tr>{rows}</table>"
                f"<b>P(class token) at layer {self.layer}</b><table>{cls}</table></div>")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
