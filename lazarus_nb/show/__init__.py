"""Results as text and figures: ``show.text`` (every table the CLI prints, as lines), ``show.figures``
(figures from results), ``show.save`` (a figure to a PNG file, atomically), ``show.plots`` (figures from arrays).

Names resolve on first use (PEP 562), so importing the sub-package stays free: the CLI checks a request before
it loads mlx.
"""

_EXPORTS = {
    "text": "lazarus_nb.show.text",
    "figures": "lazarus_nb.show.figures",
    "format": "lazarus_nb.show.format",
    "plots": "lazarus_nb.show.plots",
    "save": "lazarus_nb.show.plots.output:save",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # why here: the table above is resolved lazily, so this __init__ imports nothing

    module, _, attr = _EXPORTS[name].partition(":")
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value
