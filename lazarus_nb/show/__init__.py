"""Results as text and figures: ``show.text`` (every table the CLI prints, as lines; the reader-only baseline's in
``show.reader_text``, the causal tests' in ``show.patching_text`` and ``show.causal_text``), ``show.figures``
(figures from results), ``show.save`` (a figure to a PNG file, atomically), ``show.plots`` (figures from arrays).

Names resolve on first use (:mod:`lazarus_nb.exports`).
"""

from lazarus_nb.exports import lazy

_EXPORTS = {
    "text": "lazarus_nb.show.text",
    "reader_text": "lazarus_nb.show.reader_text",
    "causal_text": "lazarus_nb.show.causal_text",
    "patching_text": "lazarus_nb.show.patching_text",
    "figures": "lazarus_nb.show.figures",
    "format": "lazarus_nb.show.format",
    "plots": "lazarus_nb.show.plots",
    "save": "lazarus_nb.show.plots.output:save",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy(__name__, _EXPORTS)
