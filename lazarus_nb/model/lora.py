"""LoRA adapters on the attention V and O projections only (mlx-lm's ``LoRALinear``).

Parameter count per adapted block, rank r: V gets A (hidden, r) + B (r, n_kv_heads * head_dim), O gets
A (n_heads * head_dim, r) + B (r, hidden). For grouped-query attention V's output is narrower than
``hidden_size``; the original tool's printed count got this wrong.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.tuner.lora import LoRALinear

from lazarus_nb.model.hooks import parts
from lazarus_nb.model.layers import check_layers

# Short name used in checkpoint keys -> module path inside a transformer block.
TARGETS: dict[str, str] = {"v": "self_attn.v_proj", "o": "self_attn.o_proj"}


@dataclass
class LoraConfig:
    rank: int = 16  # low-rank width r of each adapter (original default)
    scale: float = 2.0  # output multiplier of the low-rank path (see TrainConfig.lora_scale)
    dropout: float = 0.0  # dropout on the adapter input; 0 keeps training deterministic
    layers: list[int] | None = None  # blocks that carry adapters; None = every block
    targets: tuple[str, ...] = field(default=("v", "o"))  # V and O only (docs/science.md "LoRA adapters")

    def resolved_layers(self, num_layers: int) -> list[int]:
        layers = list(range(num_layers)) if self.layers is None else sorted(set(self.layers))
        check_layers(layers, num_layers, "LoRA layers")
        return layers


def _get(block: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        block = getattr(block, part)
    return block


def apply_lora(model: nn.Module, config: LoraConfig) -> list[int]:
    """Freeze ``model`` and wrap V/O of the chosen blocks in LoRA layers; return the adapted block ids.

    Seed ``mx.random`` first for a reproducible A initialisation (B starts at zero, so the adapted model
    initially equals the base model exactly).
    """
    _, trunk = parts(model)
    model.freeze()
    layers = config.resolved_layers(len(trunk.layers))
    for i in layers:
        block = trunk.layers[i]
        updates = []
        for t in config.targets:
            base = _get(block, TARGETS[t])
            if isinstance(base, LoRALinear):
                raise ValueError(f"layer {i} {TARGETS[t]} already carries a LoRA adapter")
            lora = LoRALinear.from_base(base, r=config.rank, scale=config.scale, dropout=config.dropout)
            updates.append((TARGETS[t], lora))
        block.update_modules(_unflatten(updates))
    return layers


def remove_adapters(model: nn.Module) -> None:
    """Undo ``apply_lora``: put every adapted projection's original (frozen, untouched) layer back, so the model
    computes exactly the base model again and can be adapted anew. Far cheaper than reloading the model
    (milliseconds against seconds), and exact: training only ever changes the adapter matrices."""
    from mlx_lm.tuner.utils import remove_lora_layers

    remove_lora_layers(model)


def _unflatten(items: Sequence[tuple[str, nn.Module]]) -> dict:
    from mlx.utils import tree_unflatten

    return tree_unflatten(list(items))


def adapters(model: nn.Module) -> dict[tuple[int, str], LoRALinear]:
    """{(layer, "v"|"o"): LoRALinear} for every adapter in the model."""
    _, trunk = parts(model)
    out = {}
    for i, block in enumerate(trunk.layers):
        for t, path in TARGETS.items():
            m = _get(block, path)
            if isinstance(m, LoRALinear):
                out[(i, t)] = m
    return out


def trainable_count(model: nn.Module) -> int:
    """Number of trainable scalars (after ``apply_lora``: exactly the adapter matrices)."""
    return sum(v.size for _, v in tree_flatten(model.trainable_parameters()))


def expected_count(
    layers: int, rank: int, hidden: int, kv_width: int, q_width: int, targets: Sequence[str] = ("v", "o")
) -> int:
    """Adapter size from the architecture alone (independent of the model object): the printed count."""
    per = {"v": rank * (hidden + kv_width), "o": rank * (q_width + hidden)}
    return layers * sum(per[t] for t in targets)


def lora_arrays(model: nn.Module) -> dict[str, mx.array]:
    """Adapter matrices under the checkpoint keys ``layer_{i}_{v|o}_{A|B}``; A (in, r), B (r, out)
    (docs/science.md "Checkpoint")."""
    out = {}
    for (i, t), m in sorted(adapters(model).items()):
        out[f"layer_{i}_{t}_A"] = m.lora_a
        out[f"layer_{i}_{t}_B"] = m.lora_b
    return out


def set_lora_arrays(model: nn.Module, arrays: dict[str, mx.array]) -> None:
    """Inverse of ``lora_arrays``; shapes must match the model's adapters exactly."""
    found = adapters(model)
    expected = {f"layer_{i}_{t}_{ab}" for (i, t) in found for ab in "AB"}
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise ValueError(f"adapter keys do not match the model (missing {missing[:4]}, unexpected {extra[:4]})")
    for (i, t), m in found.items():
        a, b = arrays[f"layer_{i}_{t}_A"], arrays[f"layer_{i}_{t}_B"]
        if a.shape != m.lora_a.shape or b.shape != m.lora_b.shape:
            raise ValueError(
                f"layer {i} {t}: adapter shapes {a.shape}/{b.shape} do not fit this model "
                f"({m.lora_a.shape}/{m.lora_b.shape})"
            )
        m.lora_a = a.astype(m.lora_a.dtype)
        m.lora_b = b.astype(m.lora_b.dtype)


@contextmanager
def disabled(model: nn.Module, layers: Collection[int] | None = None) -> Iterator[None]:
    """Temporarily switch adapters off (scale 0): every adapter, so that inside the model computes exactly the base
    model, or only those of the blocks in ``layers`` (the others keep their scale: inside, the model is the one
    adapted at the other blocks only; "Ablation" switches off the blocks up to the classifier layer)."""
    found = {k: m for k, m in adapters(model).items() if layers is None or k[0] in layers}
    scales = {k: m.scale for k, m in found.items()}
    for m in found.values():
        m.scale = 0.0
    try:
        yield
    finally:
        for k, m in found.items():
            m.scale = scales[k]
