"""The layer-range rules every step shares: which block ids a model has, and the default classifier layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from lazarus_nb.errors import SettingError


def check_layers(layers: Sequence[int], num_layers: int, field: str) -> None:
    """The one layer-range rule: every id in 0..num_layers-1 (``field``: the setting that gave them)."""
    bad = [v for v in layers if not 0 <= v < num_layers]
    if bad:
        raise SettingError(field, f"{{field}}: layer {bad[-1]} is outside this model's layers 0..{num_layers - 1}")


def default_classifier_layer(num_layers: int) -> int:
    """The classifier layer defaults to int(0.55 * num_layers) (22 -> 12, 30 -> 16; docs/science.md "Layers and
    positions")."""
    return int(0.55 * num_layers)
