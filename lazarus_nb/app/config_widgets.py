"""TrainConfig fields as widgets, generated from the dataclass as the CLI's options are (``app.cli_args``): the
type picks the widget, ``metadata["help"]`` is its tooltip, ``metadata["choices"]`` makes a dropdown, a layer field
(``metadata["layer"]``) a slider over the model's layers, and a field with ``metadata["const"]`` (an optional
value, e.g. ``stop_when_readable``) a switch beside the value it waits for. A panel lists the fields it shows;
nothing else about them is written twice.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, fields, replace
from typing import Any, get_args, get_type_hints

import ipywidgets as w

from lazarus_nb.app.display import FIELD_WIDTH, LABEL_STYLE
from lazarus_nb.train.config import TrainConfig

_FIELDS = {f.name: f for f in fields(TrainConfig)}
_HINTS = get_type_hints(TrainConfig)


def _base_type(name: str) -> type:
    kind = _HINTS[name]
    if isinstance(kind, types.UnionType):
        kind = next(t for t in get_args(kind) if t is not type(None))
    return kind


@dataclass
class ConfigField:
    """One TrainConfig field's widgets: ``value`` (the entry), and for an optional-value field ``switch`` (on:
    the field takes ``value``; off: None)."""

    name: str
    value: w.Widget
    switch: w.Checkbox | None = None

    @property
    def widgets(self) -> list[w.Widget]:
        return [self.switch, self.value] if self.switch is not None else [self.value]

    def read(self) -> Any:
        """The field's value as the dataclass types it (None when its switch is off)."""
        if self.switch is not None and not self.switch.value:
            return None
        return _base_type(self.name)(self.value.value)


def config_field(name: str, config: TrainConfig, num_layers: int, default_layer: int) -> ConfigField:
    """The widgets of field ``name`` showing ``config``'s value; a layer field defaults to ``default_layer``."""
    meta, kind = _FIELDS[name].metadata, _base_type(name)
    value = getattr(config, name)
    tip = meta.get("help", "")
    label = name.replace("_", " ")

    def entry(cls: type, shown: Any, description: str, width: str = FIELD_WIDTH, **kw: Any) -> w.Widget:
        return cls(value=shown, description=description, tooltip=tip, style=LABEL_STYLE,
                   layout=w.Layout(width=width), **kw)

    if meta.get("layer"):
        layer = default_layer if value is None else value
        box = entry(w.IntSlider, min(max(layer, 0), num_layers - 1), label, width="27em", min=0, max=num_layers - 1)
    elif "choices" in meta:
        box = entry(w.Dropdown, value, label, options=list(meta["choices"]))
    elif "const" in meta:
        switch = w.Checkbox(value=value is not None, description=label, tooltip=tip, indent=False,
                            layout=w.Layout(width=FIELD_WIDTH))
        shown = meta["const"] if value is None else value
        return ConfigField(name, entry(w.FloatText, shown, meta.get("metavar", "value").lower(), step=0.05), switch)
    elif kind is int:
        box = entry(w.IntText, value, label)
    elif kind is float:
        box = entry(w.FloatText, value, label)
    elif kind is bool:
        box = w.Checkbox(value=value, description=label, tooltip=tip, indent=False)
    else:
        box = entry(w.Text, str(value), label)
    return ConfigField(name, box)


def read_config(base: TrainConfig, shown: dict[str, ConfigField]) -> TrainConfig:
    """``base`` with the values of the shown fields applied."""
    return replace(base, **{name: f.read() for name, f in shown.items()})
