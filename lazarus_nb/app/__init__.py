"""Front ends: the command line (``app.cli``) and the notebook panels.

Names resolve on first use (:mod:`lazarus_nb.exports`).
"""

from lazarus_nb.exports import lazy

_EXPORTS = {
    "profile": "lazarus_nb.app.profiles:profile",
    "ensure_checkpoint": "lazarus_nb.app.profiles:ensure_checkpoint",
    "TrainPanel": "lazarus_nb.app.train_panel:TrainPanel",
    "LensExplorer": "lazarus_nb.app.lens_explorer:LensExplorer",
    "PatchExplorer": "lazarus_nb.app.patch_explorer:PatchExplorer",
    "EmergenceScrubber": "lazarus_nb.app.scrubber:EmergenceScrubber",
    "SweepPanel": "lazarus_nb.app.sweep_panel:SweepPanel",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy(__name__, _EXPORTS)
