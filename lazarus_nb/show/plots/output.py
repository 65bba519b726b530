"""Figures out of matplotlib: PNG bytes for display, atomic PNG files on disk.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from lazarus_nb.files import atomic_file


def png_bytes(fig: Figure) -> bytes:
    """``fig`` as PNG bytes for display: cropped to its content, on its own (opaque) background."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=fig.get_facecolor(), bbox_inches="tight")
    return buf.getvalue()


def save(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` atomically (temp file in the same directory, then ``os.replace``); returns the path.

    The format follows the suffix (``.png``, ``.svg``, ``.pdf``...); no suffix means PNG. Parent directories
    are created. The pixel size is exactly ``figsize * dpi`` (no tight bbox), with an opaque background.
    """
    if not isinstance(fig, Figure):
        raise ValueError(f"save() needs a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=dpi, facecolor=fig.get_facecolor())
    return path
