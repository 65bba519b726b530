"""Atomic file writes: write a temp file beside the target, then ``os.replace`` it into place, so a crash
or Ctrl-C leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lazarus_nb.errors import LazarusError


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


def check_output_file(path: str | Path | None, force: bool) -> None:
    """Before anything runs: refuse (one sentence) an ``--output FILE`` for ``write_json`` that is a directory,
    or exists without ``--force``."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise LazarusError(f"--output '{path}' is a directory; give a file name such as results.json")
    if p.exists() and not force:
        raise LazarusError(f"--output '{path}' already exists; use --force to overwrite it")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise LazarusError(f"--output '{path}' cannot be created: '{parent}' is a file")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` (a result or plain data) as strict JSON to ``path``, atomically."""
    with atomic_file(path) as fh:
        fh.write(dumps(obj) + "\n")
    return Path(path)
