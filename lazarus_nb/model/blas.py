"""Load an optimized BLAS into the process before ``mlx.core`` is imported.

Why: the Linux ``mlx-cpu`` wheels ship a *reference* BLAS (~5 GFLOP/s fp32 matmul on a 2-core box).
If an optimized ``cblas_sgemm`` is already loaded with ``RTLD_GLOBAL`` when mlx's shared library is
loaded, the dynamic linker binds mlx to it instead (~180 GFLOP/s measured, 12-18x faster LoRA steps).
This module must therefore be imported before anything imports ``mlx.core``; ``lazarus_nb/__init__``
does that first thing. On macOS mlx uses Accelerate and nothing is done.

Environment: ``LAZARUS_NB_BLAS`` = a library path to load, or ``none`` to keep the reference BLAS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

# Searched in order; the first that loads wins. Debian/Ubuntu's pthread OpenBLAS first (what `make setup`
# installs), then whatever the linker knows as openblas, then MKL installed from PyPI into this prefix.
_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
)


_OPTIMIZED_MARKERS = ("libopenblas", "libmkl_rt", "libblis")


_loaded: str | None = None  # path of the library this module loaded, if any


@dataclass(frozen=True)
class BlasInfo:
    """Which BLAS the process uses for mlx matmuls."""

    name: str  # "openblas", "mkl", "blis", "accelerate" or "reference"
    path: str | None  # shared library file, when one was found in the process
    optimized: bool  # False means mlx runs on the bundled reference BLAS


def _candidate_paths() -> list[str]:
    env = os.environ.get("LAZARUS_NB_BLAS", "").strip()
    if env:
        return [] if env.lower() == "none" else [env]
    paths = [p for p in _CANDIDATES if os.path.exists(p)]
    found = ctypes.util.find_library("openblas")
    if found:
        paths.append(found)
    paths += sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    return paths


def preload() -> str | None:
    """Load the first optimized BLAS found, globally, and return its path (None if none was loaded).

    Safe to call more than once. If ``mlx.core`` is already imported it is too late for the linker
    trick: warn once, unless an optimized BLAS is already in the process anyway.
    """
    global _loaded
    if _loaded is not None or sys.platform == "darwin":
        return _loaded or None
    if "mlx.core" in sys.modules:
        if not info().optimized:
            warnings.warn(
                "mlx was imported before lazarus_nb, so the optimized BLAS could not be loaded first; "
                "matmuls run on the slow reference BLAS. Import lazarus_nb before mlx.",
                RuntimeWarning,
                stacklevel=3,
            )
        _loaded = ""  # do not try (or warn) again
        return None
    for path in _candidate_paths():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        _loaded = path
        return path
    _loaded = ""
    return None


def _mapped_libraries() -> list[str]:
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:
        return [_loaded] if _loaded else []
    return sorted({line.split()[-1] for line in text.splitlines() if "/" in line and ".so" in line})


def info() -> BlasInfo:
    """Describe the BLAS mlx will use in this process."""
    if sys.platform == "darwin":
        return BlasInfo("accelerate", None, True)
    for lib in _mapped_libraries():
        base = os.path.basename(lib)
        for marker in _OPTIMIZED_MARKERS:
            if base.startswith(marker):
                return BlasInfo(marker[3:].split("_")[0], lib, True)
    return BlasInfo("reference", None, False)


def sgemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Measure fp32 matmul throughput of mlx on the default device, in GFLOP/s (median of ``repeats``)."""
    import mlx.core as mx

    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a @ b)  # warm-up: allocation and thread start-up are not throughput
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mx.eval(a @ b)
        times.append(time.perf_counter() - t)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e9
