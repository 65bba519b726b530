"""Front ends: the command line (``app.cli``) and the notebook panels.

Names resolve on first use (PEP 562), so importing the sub-package stays free: the CLI checks a request before
it loads mlx.
"""

_EXPORTS = {
    "profile": "lazarus_nb.app.profiles:profile",
    "ensure_checkpoint": "lazarus_nb.app.profiles:ensure_checkpoint",
    "TrainPanel": "lazarus_nb.app.train_panel:TrainPanel",
    "LensExplorer": "lazarus_nb.app.lens_explorer:LensExplorer",
    "EmergenceScrubber": "lazarus_nb.app.scrubber:EmergenceScrubber",
    "SweepPanel": "lazarus_nb.app.sweep_panel:SweepPanel",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # why here: the table above is resolved lazily, so this __init__ imports nothing

    module, _, attr = _EXPORTS[name].partition(":")
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value
