"""The exception types whose message is meant for the user as-is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class LazarusError(Exception):
    """Bad input or an unusable resource, described in one sentence; the CLI prints it and exits 2."""


class SettingError(LazarusError):
    """A bad value of a named setting. ``fields`` name the setting(s) as the code does (``cls_weight``,
    ``layers``, ``output``); ``template`` is the sentence with ``{field}`` where they are named. Each front end
    names them as its user typed them (:meth:`render`: the CLI its ``--option``, a widget its label);
    ``str()`` names the fields themselves, as a notebook user passes them."""

    def __init__(self, fields: str | Sequence[str], template: str):
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)
        self.template = template
        super().__init__(self.render(str))

    @property
    def field(self) -> str:
        """The (first) setting the sentence is about."""
        return self.fields[0]

    def render(self, name: Callable[[str], str]) -> str:
        """The sentence with each field written as ``name(field)`` (several joined by commas)."""
        return self.template.replace("{field}", ", ".join(map(name, self.fields)))
