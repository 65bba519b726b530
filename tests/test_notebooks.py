"""The notebooks: stored clean, thin parameters cells, profiles, and a full smoke execution under nbval-lax.

``test_notebooks_execute`` runs ``python -m pytest --nbval-lax notebooks/`` in a subprocess with the smoke
profile (embedded model, a few training steps) and a temporary run directory, so one ``pytest`` command
covers the package tests and every notebook.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from lazarus_nb.app.profiles import SMOKE_TRAIN, Profile, profile, repo_root
from lazarus_nb.errors import LazarusError
from lazarus_nb.model.load import DEFAULT_MODEL
from lazarus_nb.train.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = ["00_overview", "01_baseline_probe", "02_baseline_lens", "03_train_dual_reward", "04_verify",
            "05_sweeps", "06_is_it_used"]
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_the_seven_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"  # nbval starts this kernel: the venv's python
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    assert "P = L.app.profile()" in first.source
    assert "import" not in first.source.replace("import lazarus_nb as L", "")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "assert " in code[-1].source, "a notebook ends with a cell of checks on real results"


# ------------------------------------------------------------------------------------------- profiles


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("LAZARUS_NB_PROFILE", "LAZARUS_NB_MODEL", "LAZARUS_NB_RUN_DIR"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_profile_default_is_full(clean_env, tmp_path):
    clean_env.chdir(ROOT / "notebooks")
    p = profile()
    assert p.name == "full" and p.model == DEFAULT_MODEL and p.answers
    assert p.train == TrainConfig() and p.train.steps == 500
    assert p.run_dir == ROOT / "runs" / "notebooks"  # the repository root, also from notebooks/
    assert p.checkpoint == p.run_dir / "checkpoint"
    clean_env.chdir(tmp_path)  # outside a checkout: relative to the current directory
    assert profile().run_dir == tmp_path.resolve() / "runs" / "notebooks"
    assert repo_root(tmp_path) is None


def test_profile_smoke_and_env_overrides(clean_env, tmp_path):
    clean_env.setenv("LAZARUS_NB_PROFILE", "smoke")
    clean_env.setenv("LAZARUS_NB_MODEL", "org/some-model")
    clean_env.setenv("LAZARUS_NB_RUN_DIR", str(tmp_path / "r"))
    p = profile()
    assert isinstance(p, Profile) and p.name == "smoke" and p.model == "org/some-model"
    assert p.run_dir == tmp_path / "r"
    t = p.train
    assert (t.steps, t.num_samples, t.heldout_samples, t.snapshot_every, t.snapshot_size) == (4, 32, 16, 2, 8)
    assert t == SMOKE_TRAIN and p.answers and p.probe_per_class >= 2
    cfg = p.train_config(steps=2, cls_weight=0.5)
    assert (cfg.steps, cfg.cls_weight, p.train.steps) == (2, 0.5, 4)  # a copy; the profile is unchanged
    with pytest.raises(LazarusError, match="unknown training setting 'stepz'"):
        p.train_config(stepz=3)


def test_profile_rejects_unknown_names(clean_env):
    clean_env.setenv("LAZARUS_NB_PROFILE", "fast")
    with pytest.raises(LazarusError) as err:
        profile()
    assert str(err.value) == "LAZARUS_NB_PROFILE must be 'smoke' or 'full', got 'fast'"


# ------------------------------------------------------------------------------------------ execution


def _kernel_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running notebooks: smoke profile, the embedded model, a temporary run directory, and
    no user-level kernelspecs (a ``python3`` kernel in ~/.local/share/jupyter could point at another Python)."""
    env = {**os.environ, "LAZARUS_NB_PROFILE": "smoke", "LAZARUS_NB_RUN_DIR": str(tmp_path / "runs"),
           "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data")}
    for var in ("LAZARUS_NB_MODEL", "PYTEST_ADDOPTS", "JUPYTER_PATH"):
        env.pop(var, None)
    return env


def test_python3_kernel_is_this_python(tmp_path, monkeypatch):
    """nbval starts the notebooks' kernelspec "python3"; it must resolve to the venv's interpreter."""
    from jupyter_client.manager import KernelManager

    for key, value in _kernel_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    cmd = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert Path(cmd[0]).resolve() == Path(sys.executable).resolve(), cmd


@pytest.mark.slow
def test_notebooks_execute(tmp_path):
    """All notebooks, in order, under nbval-lax with the smoke profile (03 writes the checkpoint 04 loads)."""
    run_dir = tmp_path / "runs"
    env = _kernel_env(tmp_path)
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "notebooks/", "-p", "no:cacheprovider", "-q",
           "--durations=5"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    seconds = time.perf_counter() - t0
    report = f"{' '.join(cmd)} -> exit {done.returncode} in {seconds:.0f} s\n{done.stdout}\n{done.stderr}"
    print(report)
    assert done.returncode == 0, report
    ckpt = run_dir / "checkpoint"
    assert (ckpt / "config.json").is_file() and (ckpt / "lora_weights.npz").is_file()
    for name in ("probe.json", "baseline_lens.json", "03_result.json", "03_emergence_heatmap.png",
                 "04_lens_before_after.png", "sweep-smoke/sweep.jsonl", "sweep-smoke/trade_off.png",
                 "06_patching.png", "06_ablation.png", "06_steering.png"):
        assert (run_dir / name).is_file(), name
    # executing must not have written outputs into the stored notebooks
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
