"""The training run's settings as one typed record (no mlx import: the CLI builds its options from it).

Every field carries its help text in ``metadata["help"]``, as mlx-lm's ``TrainingArgs`` does, so the
defaults and their explanations live here and nowhere else; ``lazarus-nb ... --help`` reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import LazarusError

if TYPE_CHECKING:
    from .lora import LoraConfig


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    steps: int = _opt(500, "optimizer steps (the original tool's default)")
    classifier_layer: int | None = _opt(
        None, "layer whose logit lens must emit the class word (default: int(0.55 * layers))")
    cls_weight: float = _opt(0.4, "weight of the classification loss, in [0, 1]: "
                                  "total = w * classification + (1 - w) * answer")
    learning_rate: float = _opt(5e-4, "Adam learning rate")
    num_samples: int = _opt(800, "training problems, balanced over the 4 operations")
    heldout_samples: int = _opt(100, "held-out evaluation problems, disjoint from training")
    lora_rank: int = _opt(16, "LoRA rank r")
    # mlx-lm's default scale 20 stalled at chance with lr 5e-4 (docs/results.md)
    lora_scale: float = _opt(2.0, "LoRA output multiplier")
    lora_layers: list[int] | None = _opt(None, "blocks whose V/O projections get adapters (default: all)")
    batch_size: int = _opt(8, "problems per step")
    seed: int = _opt(0, "data split, batch order and adapter init")
    snapshot_every: int = _opt(25, "logit-lens snapshot interval in steps, 0 = first and last only")
    # small: snapshots are overhead
    snapshot_size: int = _opt(32, "fixed held-out problems scored at every snapshot")
    checkpoint_every: int = _opt(100, "checkpoint interval in steps when a checkpoint is written, 0 = at the end only")

    def resolve(self, num_layers: int) -> TrainConfig:
        """Validate against a model; fill the classifier layer default. One clear sentence per problem."""
        cfg = TrainConfig(**asdict(self))
        if cfg.classifier_layer is None:
            cfg.classifier_layer = int(0.55 * num_layers)
        bad_layers = [i for i in cfg.lora_layers or [] if not 0 <= i < num_layers]
        checks = [
            (0 <= cfg.classifier_layer < num_layers,
             f"classifier layer must be in 0..{num_layers - 1} for this model, got {cfg.classifier_layer}"),
            (0.0 <= cfg.cls_weight <= 1.0, f"cls_weight must be in [0, 1], got {cfg.cls_weight}"),
            (cfg.steps > 0, f"steps must be positive, got {cfg.steps}"),
            (cfg.learning_rate > 0, f"learning rate must be positive, got {cfg.learning_rate}"),
            (cfg.num_samples >= 4, f"num_samples must be at least 4 (one per class), got {cfg.num_samples}"),
            (cfg.heldout_samples >= 4, f"heldout_samples must be at least 4, got {cfg.heldout_samples}"),
            (cfg.lora_rank > 0, f"LoRA rank must be positive, got {cfg.lora_rank}"),
            (cfg.batch_size > 0, f"batch size must be positive, got {cfg.batch_size}"),
            (cfg.snapshot_every >= 0, f"snapshot_every must be >= 0, got {cfg.snapshot_every}"),
            (cfg.snapshot_size >= 4, f"snapshot_size must be at least 4, got {cfg.snapshot_size}"),
            (cfg.lora_layers is None or len(cfg.lora_layers) > 0, "lora_layers must name at least one layer"),
            (not bad_layers, f"LoRA layers {bad_layers} are outside the model's layers 0..{num_layers - 1}"),
        ]
        for ok, message in checks:
            if not ok:
                raise LazarusError(message)
        return cfg

    def lora(self) -> LoraConfig:
        from .lora import LoraConfig  # imports mlx-lm: only when adapters are built

        return LoraConfig(rank=self.lora_rank, scale=self.lora_scale, layers=self.lora_layers)
