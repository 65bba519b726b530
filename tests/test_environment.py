"""The environment is the locked one: ``make setup`` installs exactly ``requirements.lock``.

Unpinned dependencies once broke the suite on a fresh machine (a new JupyterLab release changed what the
browser test could see), so the installed versions are checked against the lock, not assumed.
"""

from __future__ import annotations

import platform
import re
import sys
from importlib.metadata import distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# Installed by the venv itself or being the project: not part of the lock.
NOT_LOCKED = {"pip", "setuptools", "wheel", "lazarus-nb"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", LOCK.read_text(), flags=re.M)
    return {_norm(n): v for n, v in pins}


def test_lock_pins_every_dependency_with_hashes():
    text = LOCK.read_text()
    pins = locked()
    assert {"mlx", "mlx-lm", "jupyterlab", "ipywidgets", "ipykernel", "selenium", "nbval", "uv"} <= set(pins)
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[-1].strip())
    assert len(entries) == len(pins) and all("--hash=sha256:" in e for e in entries)


@pytest.mark.skipif((sys.implementation.name, sys.version_info[:2], platform.system(), platform.machine())
                    != ("cpython", (3, 11), "Linux", "x86_64"),
                    reason="requirements.lock is for CPython 3.11 on Linux x86_64")
def test_installed_versions_are_the_locked_ones():
    installed = {_norm(d.metadata["Name"]): d.version for d in distributions()}
    installed = {k: v for k, v in installed.items() if k not in NOT_LOCKED}
    pins = locked()
    wrong = {k: (installed.get(k), v) for k, v in pins.items() if installed.get(k) != v}
    extra = sorted(set(installed) - set(pins))
    assert not wrong, f"installed (found, locked) versions differ from requirements.lock: {wrong}; run make setup"
    assert not extra, f"installed but not in requirements.lock: {extra}; add them to pyproject.toml and make lock"
