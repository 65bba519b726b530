"""The probe step's result (step 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lazarus_nb.measure.probe import ProbeResult

if TYPE_CHECKING:

    pass


@dataclass
class ProbeReport:
    """Step 1 on one prompt family: ``to_dict()`` is ``introspect classifier --json`` and one entry of the
    demo's and notebook 01's ``probe.json``."""

    model: str
    num_layers: int
    prompt_set: str  # "symbolic", "words" or "custom"
    seed: int  # of the generated prompts, the folds and the control
    classes: dict[str, list[str]]  # class name -> its prompts
    result: ProbeResult

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "num_layers": self.num_layers, "prompt_set": self.prompt_set,
                "seed": self.seed, "classes": self.classes, **self.result.to_dict()}
