"""The emergence scrubber: step through a run's lens snapshots, the per-class lens probability beside the heatmap.
"""

from __future__ import annotations

from pathlib import Path

import ipywidgets as w
from matplotlib.figure import Figure

from lazarus_nb.app.display import FigureSlot
from lazarus_nb.errors import LazarusError
from lazarus_nb.show import figures
from lazarus_nb.show.format import pct
from lazarus_nb.train import checkpoint
from lazarus_nb.train.history import History, Snapshot

PLAY_MS = (500, 1500)
"""The play control's interval per snapshot, least and most: slow enough to read each frame, fast enough to watch
a long run (21 snapshots in about 10 s)."""


MIN_PLAY_MS = 3000
"""A play of a few snapshots lasts at least this long: a short run's frames are spread over a time a person
can follow, not flashed past."""


class EmergenceScrubber:
    """Scrub through training: a step slider (and a play button) over the snapshots of a training history.

    At the selected snapshot the figure shows, per class, P(own class token) at every layer (the classifier
    layer marked), next to the emergence heatmap with that step marked (``figures.scrub_figure``): which
    operation becomes readable first, and where. ``source`` is a :class:`~lazarus_nb.train.loop.History` (e.g.
    ``result.state.history`` after training) or a checkpoint directory (its ``history.json``; the classifier
    layer then defaults to the checkpoint's). ``show(i)`` selects snapshot ``i`` (the slider calls it), moving
    the figure's artists in place and updating :attr:`slot` (whose hidden counter the browser test reads).

    Attributes: ``slider`` (IntSlider over snapshot indices), ``play`` (Play, linked to the slider in the
    browser; ``interval_ms`` per snapshot, by default within :data:`PLAY_MS` so a play lasts at least
    :data:`MIN_PLAY_MS`), ``label`` (the selected step), ``figure``
    (:class:`~lazarus_nb.show.plots.emergence.ScrubFigure`), ``slot`` (:class:`FigureSlot`), ``history``.
    """

    def __init__(self, source: History | str | Path, classifier_layer: int | None = None,
                 interval_ms: int | None = None):
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
        if interval_ms is None:
            interval_ms = min(max(MIN_PLAY_MS // max(n - 1, 1), PLAY_MS[0]), PLAY_MS[1])
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
        self.label.value = (f"step <b>{self.step}</b> &middot; snapshot {self.figure.index + 1} of {n}"
                            + self._top1_text(self.history.snapshots[self.figure.index]))
        self.slot.update(fig)
        return fig

    def _top1_text(self, snap: Snapshot) -> str:
        """The lens's full-vocab top-1 at the classifier layer on both snapshot sets (held-out: generalisation,
        training: memorisation), so the scrubber carries what ``steps_to_readable`` reads."""
        if self.classifier_layer is None:
            return ""
        i = self.history.layers.index(self.classifier_layer)
        parts = [f"held-out {pct(snap.top1_acc[i], 0)}"]
        if snap.train_top1_acc:
            parts.append(f"training {pct(snap.train_top1_acc[i], 0)}")
        return f" &middot; top-1 at L{self.classifier_layer}: {', '.join(parts)}"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
