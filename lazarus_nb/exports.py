"""Names a package resolves on first use (PEP 562): the sub-packages keep their ``__init__`` free of imports, so
importing one costs nothing (the CLI checks a request before it loads mlx), and a notebook still reaches the steps,
figures and panels as ``L.run.probe_family``, ``L.show.figures``, ``L.app.TrainPanel``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``table`` maps a public name to ``"module"`` or
    ``"module:attribute"``, imported when the name is first asked for."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = table[name].partition(":")
        value = importlib.import_module(module)
        return getattr(value, attr) if attr else value

    return __getattr__
