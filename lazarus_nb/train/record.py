"""A checkpoint's ``config.json`` as a typed record (:class:`RunRecord`): read and written here only.
"""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lazarus_nb.errors import LazarusError
from lazarus_nb.files import atomic_file
from lazarus_nb.train.config import TrainConfig

if TYPE_CHECKING:
    pass


REQUIRED_KEYS = ("model", "classifier_layer", "lora_rank", "cls_weight", "steps", "final_accuracy")
"""The minimum ``config.json`` keys (docs/science.md "Checkpoint"), written first; a file without the first five is
not a run record."""


@dataclass
class RunRecord:
    """A checkpoint's ``config.json``: the run as trained, how far it got, and its results.

    On disk it is one flat JSON object (the required keys first, then the other training settings, then the rest),
    as earlier versions wrote it, so their checkpoints read back unchanged and mlx-lm finds what it reads.
    Keys this version does not know are kept in :attr:`extra` and written back.
    """

    model: str  # what the run loaded: embedded name, Hugging Face id or path
    train: TrainConfig  # as trained: classifier_layer filled in, lora_layers = the blocks that carry adapters
    class_tokens: dict[str, int] = field(default_factory=dict)  # class word -> token id (science.md "Class tokens")
    class_token_strings: dict[str, str] = field(default_factory=dict)  # class word -> the token as text
    steps_completed: int = 0
    status: str = "running"  # running | complete | interrupted | diverged
    # why a complete run ended: "steps" (all configured steps ran) or "readable" (stop_when_readable stopped it
    # early; steps_completed < steps); None while running, and in records saved before it existed
    stop_reason: str | None = None
    lora_targets: list[str] = field(default_factory=lambda: ["v", "o"])
    lora_dropout: float = 0.0
    trainable_params: int | None = None
    train_seconds: float = 0.0
    architecture: dict[str, Any] = field(default_factory=dict)  # model_type, num_layers, hidden_size, ...
    versions: dict[str, str] = field(default_factory=dict)  # lazarus-nb, mlx, mlx-lm, numpy
    # results (None until measured): canonical accuracy at the classifier layer after training (docs/science.md
    # "Canonical table"), and
    # the held-out metrics before/after; final_accuracy and the two final_heldout_* are what the verify step
    # compares with (results.verify.TrainedMetrics reads and writes them)
    final_accuracy: float | None = None
    baseline_answer_accuracy: float | None = None
    final_heldout_restricted_accuracy: float | None = None
    final_heldout_top1_accuracy: float | None = None
    final_answer_accuracy: float | None = None
    # first snapshot step with full-vocab top-1 >= 0.9 at the classifier layer on the snapshot set (train.History)
    steps_to_readable: int | None = None
    steps_to_readable_train: int | None = None  # the same on the training-set snapshot set
    heldout_fingerprint: str | None = None  # data.heldout_fingerprint of the held-out set (None: older runs)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @property
    def classifier_layer(self) -> int:
        assert self.train.classifier_layer is not None  # a record holds the resolved config
        return self.train.classifier_layer

    def to_dict(self) -> dict[str, Any]:
        """The flat ``config.json`` object."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("train", "extra")}
        flat = {**asdict(self.train), **deepcopy(own)}  # copies: the caller may change the dict
        out = {k: flat.pop(k) for k in REQUIRED_KEYS}
        return {**out, **flat, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Read a ``config.json`` object; raises ValueError naming the first missing required key."""
        missing = [k for k in REQUIRED_KEYS[:5] if k not in data]
        if missing:
            raise ValueError(f"it has no '{missing[0]}'")
        train_keys = {f.name for f in fields(TrainConfig)}
        own_keys = {f.name for f in fields(cls)} - {"train", "extra"}
        # Runs saved before these settings existed trained without them: read them as trained.
        data = {"answer_terminator": "none", "adam_bias_correction": False, **data}
        if isinstance(data.get("compile_step"), bool):  # saved as a switch before "auto" existed
            data["compile_step"] = "always" if data["compile_step"] else "never"
        return cls(train=TrainConfig(**{k: data[k] for k in train_keys if k in data}),
                   **{k: data[k] for k in own_keys if k in data},
                   extra={k: v for k, v in data.items() if k not in train_keys | own_keys})

    def updated(self, **values: Any) -> RunRecord:
        """A copy with ``values`` set by their ``config.json`` key (training settings, record fields, or new keys)."""
        train_keys = {f.name for f in fields(TrainConfig)}
        own_keys = {f.name for f in fields(self)} - {"train", "extra"}
        own = {k: v for k, v in values.items() if k in own_keys}
        train = {k: v for k, v in values.items() if k in train_keys}
        extra = {k: v for k, v in values.items() if k not in own and k not in train}
        return replace(self, train=replace(self.train, **train), extra={**self.extra, **extra}, **own)

    def write(self, path: str | Path) -> None:
        """Write ``config.json`` at ``path`` atomically."""
        with atomic_file(path) as fh:
            fh.write(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """Read a ``config.json``; one sentence (LazarusError) if it is unreadable or not a run record."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LazarusError(f"the checkpoint config in '{path.parent}' is unreadable: {exc}") from None
        try:
            if not isinstance(data, dict):
                raise ValueError("it is not a JSON object")
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise LazarusError(f"'{path}' is not a lazarus_nb run record: {exc}") from None
