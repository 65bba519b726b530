"""Files the package writes: atomic writes (a temp file beside the target, then ``os.replace``, so a crash or
Ctrl-C leaves either the old file or the new one, never half of one), strict JSON, and the one check of an output
path before anything runs (:func:`check_output`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lazarus_nb.errors import SettingError


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file for writing (``"w"`` text UTF-8, ``"wb"`` bytes) that replaces ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Key added to a JSON result that had NaN or infinite numbers: the JSON paths of those values (written as null),
# e.g. ["prompts[0].layers[3].targets.add.prob"]. Absent when every number was finite.
NON_FINITE = "non_finite"


def json_clean(obj: Any) -> Any:
    """Make ``obj`` strict-JSON serialisable: NaN/inf -> None, numpy scalars -> Python, tuples -> lists,
    results -> their ``to_dict()``. A result (dict) that held NaN or infinite numbers also gets the key
    ``non_finite`` listing where (their values are null), so a reader can tell "not finite" from "not measured"."""
    non_finite: list[str] = []
    out = _clean(obj, "", non_finite)
    if non_finite and isinstance(out, dict):
        out[NON_FINITE] = non_finite
    return out


def _clean(obj: Any, path: str, non_finite: list[str]) -> Any:
    """``json_clean`` of the value at JSON ``path``; appends the path of every NaN/inf it makes None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v, f"{path}.{k}" if path else str(k), non_finite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, f"{path}[{i}]", non_finite) for i, v in enumerate(obj)]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        non_finite.append(path)
        return None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:  # numpy / mlx scalar
        return _clean(obj.item(), path, non_finite)
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist(), path, non_finite)
    if hasattr(obj, "to_dict"):
        return _clean(obj.to_dict(), path, non_finite)
    return str(obj)


def dumps(obj: Any) -> str:
    """Strict JSON text of ``obj`` (``json_clean``): never a NaN or Infinity token."""
    return json.dumps(json_clean(obj), allow_nan=False, indent=2, ensure_ascii=False)


def check_output(path: str | Path, kind: str = "file", force: bool | None = False, *, field: str = "output",
                 may_hold: Callable[[Path], bool] | None = None, holds: str = "files", advice: str | None = None,
                 new_parents: bool = True) -> Path:
    """The one rule for a path a command will write, checked before anything runs; one sentence
    (:class:`SettingError` on ``field``) for a path that must not be written:

    * ``kind="file"``: a directory, or an existing file without ``force``;
    * ``kind="dir"``: a file, or a directory that already holds files without ``force``, unless
      ``may_hold(path)`` says they are what the caller continues (a sweep's runs);
    * either: a parent that cannot hold it: a file, not writable, or (``new_parents`` False) missing. Missing
      parents are otherwise fine: the atomic writes create them.

    ``force`` None: the caller cannot overwrite (the refusal says to choose another path). ``holds`` names what a
    refused directory holds and ``advice`` replaces the refusal's advice (a checkpoint: ``--resume``)."""
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise SettingError(field, f"{{field}} '{path}' is a directory; give a file name")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise SettingError(field, f"{{field}} '{path}' is a file; give a directory")
    taken = p.exists() if kind == "file" else p.is_dir() and any(p.iterdir())
    if taken and not force and not (may_hold is not None and may_hold(p)):
        what = "already exists" if kind == "file" else f"already holds {holds}"
        default = ("choose another path" if force is None
                   else f"use --force to overwrite {'it' if kind == 'file' else 'them'}")
        raise SettingError(field, f"{{field}} '{path}' {what}; {advice or default}")
    parent = p.parent
    if not new_parents and not parent.is_dir():
        raise SettingError(field, f"{{field}} '{path}' cannot be written: the directory '{parent}' does not exist")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SettingError(field, f"{{field}} '{path}' cannot be created: '{parent}' is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SettingError(field, f"{{field}} '{path}' cannot be written: the directory '{parent}' is not writable")
    return p


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` (a result or plain data) as strict JSON to ``path``, atomically."""
    with atomic_file(path) as fh:
        fh.write(dumps(obj) + "\n")
    return Path(path)
