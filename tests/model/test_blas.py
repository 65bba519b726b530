"""Tests of the BLAS preloading (lazarus_nb.blas): which library the process uses, and the import-order warning.

Import order is process-wide state, so every import-order scenario runs in a fresh interpreter.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lazarus_nb.model import blas
from lazarus_nb.model.blas import BlasInfo

ROOT = Path(__file__).resolve().parents[2]
WARNING_TEXT = "Import lazarus_nb before mlx"


def _openblas_file() -> str | None:
    """An OpenBLAS shared library on this machine, found without using the module under test."""
    for path in (
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    ):
        if os.path.exists(path):
            return path
    return ctypes.util.find_library("openblas")


def _mapped_blas_files() -> list[str]:
    """Optimized BLAS files mapped into this process, read directly from /proc/self/maps."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    files = {line.split()[-1] for line in maps if line.split() and line.split()[-1].startswith("/")}
    return sorted(f for f in files if os.path.basename(f).startswith(("libopenblas", "libmkl_rt", "libblis")))


def _run(code: str, report: bool = True, **env_changes: str | None) -> dict:
    """Run ``code`` (then ``_REPORT`` if ``report``) in a fresh interpreter at the repo root; return the last
    JSON line it printed."""
    env = dict(os.environ)
    env.setdefault("LAZARUS_NB_HOME", "/tmp/lzhome")
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    script = textwrap.dedent(code) + (textwrap.dedent(_REPORT) if report else "")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


_REPORT = """
    import json, warnings
    from lazarus_nb.model import blas
    i = blas.info()
    print(json.dumps({"runtime": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
                      "name": i.name, "path": i.path, "optimized": i.optimized}))
"""


def test_info_returns_blasinfo():
    i = blas.info()
    assert isinstance(i, BlasInfo)
    assert isinstance(i.optimized, bool)
    if i.optimized and sys.platform != "darwin":
        assert i.path is not None and os.path.exists(i.path)
    else:
        assert i.name in ("reference", "accelerate")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
def test_info_optimized_when_an_optimized_library_is_mapped():
    # conftest imports lazarus_nb first, so an installed OpenBLAS has been preloaded into this process
    if _openblas_file() is None and not _mapped_blas_files():
        pytest.skip("no OpenBLAS on this machine")
    mapped = _mapped_blas_files()
    assert mapped, "an OpenBLAS exists but none is mapped into the test process"
    i = blas.info()
    assert i.optimized is True
    assert i.path in mapped
    assert i.name in ("openblas", "mkl", "blis")


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS trick is Linux-only")
def test_mlx_imported_first_without_optimized_blas_warns():
    got = _run(
        """
        import mlx.core
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import lazarus_nb
            from lazarus_nb.model import blas
            blas.preload()  # a second call must not warn again
        """,
        LAZARUS_NB_BLAS="none",
    )
    assert got["optimized"] is False and got["name"] == "reference"
    assert len(got["runtime"]) == 1, got["runtime"]
    assert WARNING_TEXT in got["runtime"][0]


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS trick is Linux-only")
def test_mlx_imported_first_with_optimized_blas_already_mapped_does_not_warn():
    path = _openblas_file()
    if path is None:
        pytest.skip("no OpenBLAS on this machine")
    got = _run(
        f"""
        import ctypes
        ctypes.CDLL({path!r}, mode=ctypes.RTLD_GLOBAL)
        import mlx.core
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import lazarus_nb
        """,
        LAZARUS_NB_BLAS="none",
    )
    assert got["runtime"] == []
    assert got["optimized"] is True and got["name"] == "openblas"


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS trick is Linux-only")
def test_lazarus_nb_imported_first_loads_openblas():
    if _openblas_file() is None:
        pytest.skip("no OpenBLAS on this machine")
    got = _run(
        """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import lazarus_nb
            import mlx.core
        """,
        LAZARUS_NB_BLAS=None,
    )
    assert got["runtime"] == []
    assert got["optimized"] is True and got["name"] == "openblas"
    assert "openblas" in os.path.basename(got["path"])


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS trick is Linux-only")
def test_blas_none_keeps_reference_without_warning():
    got = _run(
        """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import lazarus_nb
            import mlx.core
        """,
        LAZARUS_NB_BLAS="none",
    )
    assert got["runtime"] == []  # mlx was not imported first: nothing to warn about
    assert got["optimized"] is False and got["name"] == "reference" and got["path"] is None


@pytest.mark.skipif(sys.platform != "linux", reason="the BLAS trick is Linux-only")
def test_preload_repeat_returns_none_when_nothing_loaded():
    got = _run(
        """
        import json
        from lazarus_nb.model import blas  # the package __init__ made the first call, which loaded nothing
        print(json.dumps({"again": blas.preload()}))
        """,
        report=False,
        LAZARUS_NB_BLAS="none",
    )
    # docstring: "return its path (None if none was loaded)"
    assert got["again"] is None


def test_sgemm_gflops_positive_float():
    g = blas.sgemm_gflops(n=64, repeats=3)
    assert isinstance(g, float)
    assert g > 0 and g == g and g != float("inf")
