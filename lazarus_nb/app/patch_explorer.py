"""The patching explorer: pick a pair, a model, a layer and a prompt position; see where in the pair's layers x
positions the answer moves, and what one patch does to the answer and to the readable word.
"""

from __future__ import annotations

import html
import traceback
from typing import Any

import ipywidgets as w

from lazarus_nb.app.display import FigureSlot
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.results.patching import PairPatch, PatchingResult
from lazarus_nb.run.patching import patch_pair
from lazarus_nb.show import figures, patching_text
from lazarus_nb.show.format import token
from lazarus_nb.train.config import TrainConfig


class PatchExplorer:
    """One pair of a :class:`PatchingResult` at a time: its effect on the whole answer at every layer x position (the
    batched result's, ``figures.pair_patching_figure``) with the chosen cell outlined, and that one patch recomputed
    beside the clean target and source runs (``run.patching.patch_pair``): the greedy answer, P(source answer),
    P(target answer), and the lens's class and top tokens at the classifier layer.

    ``loaded`` is the model the result was computed on (with its adapters when the result has an adapted model; the
    base model is the same one with them switched off); ``config``: the run whose classifier layer and class tokens
    are read (default: the result's). :meth:`show` moves the controls to its arguments; :attr:`view` is the last
    patch shown."""

    def __init__(self, loaded: LoadedModel, result: PatchingResult, config: TrainConfig | None = None):
        self.loaded = loaded
        self.result = result
        self.config = config or result.config
        labels = [m.label for m in result.models]
        self.view: PairPatch | None = None
        self.fig = None
        self.pair = w.Dropdown(options=[(p.name, i) for i, p in enumerate(result.pairs)], value=0,
                               description="pair", style={"description_width": "5em"}, layout=w.Layout(width="28em"))
        self.model = w.ToggleButtons(options=labels, value=labels[-1], description="model",
                                     style={"description_width": "5em"})
        layer = result.classifier_layer if result.classifier_layer is not None else result.num_layers // 2
        self.layer = w.IntSlider(value=layer, min=0, max=result.num_layers - 1, description="layer",
                                 continuous_update=False, style={"description_width": "5em"})
        self.position = w.Dropdown(description="position", style={"description_width": "5em"})
        self.slot = FigureSlot()
        self.text = w.HTML()
        self.output = w.Output()
        self._syncing = False  # set while show() moves the controls: their observers stand by
        self._positions(0)
        for name in ("pair", "model", "layer", "position", "text", "output"):
            getattr(self, name).add_class(f"lazarus-patch-{name}")
            if name in ("pair", "model", "layer", "position"):
                getattr(self, name).observe(self._on_change, names="value")
        self.widget = w.VBox([
            w.HTML(f"<b>Patching explorer</b> &middot; {html.escape(loaded.name)}: one block output at one position "
                   "copied from the source prompt's run into the target's"),
            w.HBox([self.pair, self.model]),
            w.HBox([self.layer, self.position]),
            w.HBox([self.slot.widget, self.text]),
            self.output,
        ])
        self.show()

    def _positions(self, pair: int) -> None:
        ids = self.result.ids[pair]
        options = [(f"{i}: {token(t, 8)}{'  (operator)' if i == ids.first else ''}", i)
                   for i, t in enumerate(self.result.tokens[pair])]
        self.position.options = options
        self.position.value = len(options) - 1  # the last prompt position: where the lens reads the class

    def _on_change(self, change: Any) -> None:
        if self._syncing:
            return
        try:
            if change.owner is self.pair:
                self._syncing = True
                try:
                    self._positions(change.new)
                finally:
                    self._syncing = False
            self.show()
        except Exception:  # a widget callback has nowhere else to report: show it under the explorer
            self.output.append_stderr(traceback.format_exc())

    def show(self, pair: int | None = None, layer: int | None = None, position: int | None = None,
             model: str | None = None) -> PairPatch:
        """Patch ``pair`` (an index into the result's pairs) at (``layer``, ``position``) on ``model`` (a label of
        the result's models); unset arguments keep the controls' values (a new pair starts at its last position)."""
        self._syncing = True
        try:
            if pair is not None and pair != self.pair.value:
                self.pair.value = pair
                self._positions(pair)
            for control, value in ((self.layer, layer), (self.position, position), (self.model, model)):
                if value is not None:
                    control.value = value
        finally:
            self._syncing = False
        i, label = self.pair.value, self.model.value
        self.text.value = "<i>computing...</i>"
        self.fig = figures.pair_patching_figure(self.result, i, label, self.layer.value, self.position.value)
        self.slot.update(self.fig)
        self.view = patch_pair(self.loaded, self.result.pairs[i], self.layer.value, self.position.value,
                               config=self.config, base=label == self.result.models[0].label)
        lines = patching_text.pair_patch(self.view)
        self.text.value = ("<pre style='white-space: pre-wrap; font-size: 12px; margin: 0'>"
                           + html.escape("\n".join([lines[0], *[ln.strip() for ln in lines[1:]]])) + "</pre>")
        return self.view

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
