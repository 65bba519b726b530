"""What the notebook panels share (``train_panel``, ``lens_explorer``, ``scrubber``, ``sweep_panel``): a live
figure slot, the run-button panel and its error note.

The panels are thin ipywidgets front ends over :mod:`lazarus_nb.run` and :mod:`lazarus_nb.show.figures`; each
has a plain method that does the work (``TrainPanel.run()``, ``LensExplorer.show(prompt)``), so tests and
headless notebook runs exercise exactly what a click does.

Live figures
------------
A panel owns *one* figure (``show.plots.training.training_dashboard()``), redrawn in place and pushed into a
:class:`FigureSlot`: a single display slot inside the widget whose content is replaced, never appended
to. The slot stores the figure as :func:`lazarus_nb.show.plots.output.png_bytes` renders it, the same PNG a
figure shows as the last expression of a cell. Why not an IPython display handle (``display(fig, display_id=True)`` /
``handle.update(fig)``)? In JupyterLab a display handle cannot reach a figure that lives inside a widget:
the ``Output`` widget drops ``update_display_data`` messages (jupyter-widgets/ipywidgets#1844, visible in
its ``add()`` which keeps only display_data/stream/error), and output produced by a button callback outside
an ``Output`` widget is discarded altogether. Replacing the ``Output`` widget's ``outputs`` trait is widget
*state*, so it works the same from a button click, from a plain cell (``panel.run()``), from another
thread, and in a kernel with no browser attached (nbval, papermill). :class:`FigureSlot` keeps the
display-handle vocabulary (``update(fig)``), and shows how many times it was updated and the titles of the figure
it shows in a hidden ``<span class="lazarus-redraws" data-count="N" data-title="...">N</span>`` (what a browser
test reads to see live redraws, and which figure is shown: a PNG's titles cannot be read from the page).

Errors the user can fix (bad hyperparameters, an unusable checkpoint directory) are
:class:`~lazarus_nb.errors.LazarusError` sentences; the widgets show them in their output area instead of
raising.
"""

from __future__ import annotations

import base64
import html
import traceback
from typing import Any

import ipywidgets as w
from matplotlib.figure import Figure

from lazarus_nb.show.plots import output as plot_output

LABEL_STYLE = {"description_width": "9.5em"}


FIELD_WIDTH = "21em"


def figure_output(fig: Figure, natural_size: bool = False) -> dict[str, Any]:
    """An nbformat ``display_data`` output holding ``fig`` as a PNG (what an Output widget stores).

    ``natural_size``: shown at the PNG's own width, never shrunk to the page (JupyterLab's ``unconfined`` image
    metadata); a wider figure scrolls sideways in its output area instead of shrinking its text."""
    png = plot_output.png_bytes(fig)
    width, height = (int(v) for v in fig.get_size_inches() * fig.dpi)
    return {
        "output_type": "display_data",
        "data": {"image/png": base64.b64encode(png).decode("ascii"),
                 "text/plain": f"<{type(fig).__name__} size {width}x{height}>"},
        "metadata": {"image/png": {"unconfined": True}} if natural_size else {},
    }


def figure_title(fig: Figure) -> str:
    """The titles a person reads on ``fig``, joined by " | ": its suptitle, then each axes' titles (left, centre,
    right), in axes order; "" for a figure without a title. A figure of several panels is named by its panels'
    titles too (the logit-lens grid's suptitle is generic, its panel titles name the prompt)."""
    titles = [fig.get_suptitle()] + [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center", "right")]
    return " | ".join(t for t in titles if t)


class FigureSlot:
    """One place in a widget where a figure is shown; ``update(fig)`` replaces it in place.

    ``output`` is an ``ipywidgets.Output`` (CSS class ``lazarus-figure``) whose ``outputs`` hold exactly one
    PNG (see the module docstring for why this is not an IPython display handle), or one line of text while
    the next figure is computed (:meth:`wait`). ``renders`` counts updates; ``redraws`` is a hidden HTML widget
    showing that count and the shown figure's titles (:func:`figure_title`; empty while text is shown) to the
    browser. ``widget`` holds both. ``natural_size``: the figure keeps its own width
    and the slot scrolls sideways (for figures whose text is unreadable when shrunk to the page).
    """

    def __init__(self, fig: Figure | None = None, natural_size: bool = False):
        self.natural_size = natural_size
        self.output = w.Output(layout=w.Layout(width="100%", overflow="auto") if natural_size else w.Layout())
        self.output.add_class("lazarus-figure")
        self.redraws = w.HTML(layout=w.Layout(display="none"))
        self.widget = w.VBox([self.output, self.redraws])
        self.fig = fig
        self.renders = 0
        self._label("")
        if fig is not None:
            self.update(fig)

    def update(self, fig: Figure | None = None) -> None:
        if fig is not None:
            self.fig = fig
        if self.fig is None:
            return
        self.output.outputs = (figure_output(self.fig, self.natural_size),)
        self.renders += 1
        self._label(figure_title(self.fig))

    def wait(self, text: str) -> None:
        """Show ``text`` in place of the figure (say, what is being computed), so a stale figure is never shown
        as the current one; the next :meth:`update` replaces it."""
        self.output.outputs = ({"output_type": "stream", "name": "stdout", "text": text.rstrip("\n") + "\n"},)
        self._label("")

    def _label(self, title: str) -> None:
        self.redraws.value = (f'<span class="lazarus-redraws" data-count="{self.renders}" '
                              f'data-title="{html.escape(title, quote=True)}">{self.renders}</span>')

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def seconds_text(seconds: float) -> str:
    """A duration in a status line: tenths below ten seconds, whole seconds above."""
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def show_note(out: w.Output, text: str, error: bool = False) -> None:
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
            show_note(self.output, traceback.format_exc(), error=True)

    def _fail(self, message: str) -> None:  # returns None so run() can `return self._fail(...)`
        self.progress.bar_style = "danger"
        self.status.value = f"<span style='color:#b00020'>{html.escape(message)}</span>"
        show_note(self.output, f"Error: {message}", error=True)
        return None
