"""Run profiles for the notebooks: one place that decides how big a notebook run is.

Every notebook's first code cell (tagged ``parameters``, papermill-style) is just::

    from lazarus_nb.profiles import profile
    P = profile()
    MODEL = P.model          # a few overridable variables

so a person, ``papermill -p MODEL ...`` and the test suite (nbval) all share that cell.

``LAZARUS_NB_PROFILE`` picks the size:

* ``full`` (default): the original tool's training defaults (500 steps, 800 problems, snapshots every 25
  steps), 50 probe prompts per class and family, greedy answer accuracy on the 100 held-out problems.
* ``smoke``: the same code paths in seconds (4 steps, 32 problems, 16 held-out, a snapshot every 2 steps
  on 8 problems, 8 probe prompts per class); answer accuracy on the 16 held-out problems. It shows that
  everything runs, not that the classifier emerges.

The sweep notebook (05) takes its grid and base settings from the profile too: ``full`` sweeps cls_weight
0, 0.2, ..., 1 over seeds 0 and 1 (12 runs of the default 500 steps: hours on a laptop CPU), and the control
tasks: every label map over seeds 0, 1 and 2 (12 more runs); ``smoke`` two 2-step runs (cls_weight 0.2 and 0.8)
and two for the controls (the truth and the ``operand`` control).

``LAZARUS_NB_MODEL`` overrides the model (embedded name, Hugging Face id or local mlx-lm directory) and
``LAZARUS_NB_RUN_DIR`` the directory the notebooks hand their results through (default
``runs/notebooks`` under the repository root, or under the current directory outside a checkout).
"""

from __future__ import annotations

import os
from copy import deepcopy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lazarus_nb.data.labels import LABEL_MAPS
from lazarus_nb.errors import LazarusError
from lazarus_nb.measure.ablation import TEXT_WINDOWS
from lazarus_nb.model.load import DEFAULT_MODEL, load_model
from lazarus_nb.run.ablation import DRAWS, PROBLEMS
from lazarus_nb.run.steering import ALPHAS
from lazarus_nb.run.steps import run_dual_reward
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig

PROFILES = ("smoke", "full")


ENV_PROFILE = "LAZARUS_NB_PROFILE"


ENV_MODEL = "LAZARUS_NB_MODEL"


ENV_RUN_DIR = "LAZARUS_NB_RUN_DIR"


SMOKE_TRAIN = TrainConfig(steps=4, num_samples=32, heldout_samples=16, snapshot_every=2, snapshot_size=8)
"""The smoke profile's training run (also what notebook 04 trains when it finds no checkpoint)."""


FULL_SWEEP: dict[str, list[Any]] = {"cls_weight": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], "seed": [0, 1]}


SMOKE_SWEEP: dict[str, list[Any]] = {"cls_weight": [0.2, 0.8]}
"""The grids of notebook 05 (field -> values; every combination is one run), over ``Profile.sweep_train``."""


FULL_CONTROLS: dict[str, list[Any]] = {"label_map": list(LABEL_MAPS), "seed": [0, 1, 2]}


SMOKE_CONTROLS: dict[str, list[Any]] = {"label_map": ["true", "operand"]}
"""The control-task grids of notebook 05 (the truth beside its controls), over ``Profile.sweep_train``."""


@dataclass(frozen=True)
class CausalSizes:
    """How much of each causal test notebook 06 runs (``full``: the CLI's defaults)."""

    pairs: int = 24  # activation-patching pairs
    draws: int = DRAWS  # random subspaces the ablation is compared with
    problems: int = PROBLEMS  # held-out problems the ablation scores
    text_windows: int | None = TEXT_WINDOWS  # general-text windows for the ablation's KL (None: the whole text)
    alphas: tuple[float, ...] = ALPHAS  # steering doses


SMOKE_CAUSAL = CausalSizes(pairs=4, draws=3, problems=8, text_windows=1, alphas=(-2.0, 0.0, 2.0))


@dataclass(frozen=True)
class Profile:
    """Settings of one notebook run (see the module docstring)."""

    name: str  # "smoke" or "full"
    model: str  # embedded model name, Hugging Face id or local directory
    run_dir: Path  # where notebooks write results and read each other's (absolute)
    probe_per_class: int  # prompts per class and prompt family for the baseline probe
    train: TrainConfig = field(default_factory=TrainConfig)  # dual-reward training settings
    answers: bool = True  # greedy answer accuracy before/after training (on the held-out set)
    sweep_grid: dict[str, list[Any]] = field(default_factory=lambda: deepcopy(FULL_SWEEP))  # notebook 05's grid
    sweep_train: TrainConfig = field(default_factory=TrainConfig)  # ... and the settings it does not vary
    controls_grid: dict[str, list[Any]] = field(default_factory=lambda: deepcopy(FULL_CONTROLS))  # ... its controls
    causal: CausalSizes = field(default_factory=CausalSizes)  # notebook 06's causal tests

    @property
    def checkpoint(self) -> Path:
        """The checkpoint notebook 03 writes and notebook 04 verifies."""
        return self.run_dir / "checkpoint"

    @property
    def sweep_dir(self) -> Path:
        """Where notebook 05 sweeps (one per profile: a sweep directory holds runs of one setting)."""
        return self.run_dir / f"sweep-{self.name}"

    @property
    def controls_dir(self) -> Path:
        """Where notebook 05 sweeps the control tasks."""
        return self.run_dir / f"controls-{self.name}"

    def train_config(self, **overrides: Any) -> TrainConfig:
        """A fresh copy of :attr:`train` with ``overrides`` (TrainConfig field names) applied."""
        unknown = sorted(set(overrides) - set(TrainConfig.__dataclass_fields__))
        if unknown:
            raise LazarusError(f"unknown training setting '{unknown[0]}'")
        return replace(self.train, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


def repo_root(start: Path | None = None) -> Path | None:
    """The lazarus_nb checkout containing ``start`` (default: cwd): a directory with pyproject.toml and
    notebooks/. None outside a checkout."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "notebooks").is_dir():
            return d
    return None


def default_run_dir() -> Path:
    return (repo_root() or Path.cwd().resolve()) / "runs" / "notebooks"


def profile(name: str | None = None) -> Profile:
    """The profile named by ``name`` or ``$LAZARUS_NB_PROFILE`` (default "full"), with env overrides."""
    name = name if name is not None else os.environ.get(ENV_PROFILE, "").strip() or "full"
    if name not in PROFILES:
        raise LazarusError(f"{ENV_PROFILE} must be 'smoke' or 'full', got '{name}'")
    model = os.environ.get(ENV_MODEL, "").strip() or DEFAULT_MODEL
    env_dir = os.environ.get(ENV_RUN_DIR, "").strip()
    run_dir = Path(env_dir).expanduser().resolve() if env_dir else default_run_dir()
    if name == "smoke":
        return Profile(name, model, run_dir, probe_per_class=8, train=replace(SMOKE_TRAIN), answers=True,
                       sweep_grid=deepcopy(SMOKE_SWEEP), sweep_train=replace(SMOKE_TRAIN, steps=2),
                       controls_grid=deepcopy(SMOKE_CONTROLS), causal=SMOKE_CAUSAL)
    return Profile(name, model, run_dir, probe_per_class=50, train=TrainConfig(), answers=True)


def ensure_checkpoint(p: Profile, path: str | Path | None = None) -> tuple[Path, bool]:
    """(checkpoint dir, trained_now): the checkpoint at ``path`` (default ``p.checkpoint``), or, if there is
    none, a *smoke* checkpoint trained there now (4 steps, for notebook 04 run on its own)."""
    path = Path(path) if path is not None else p.checkpoint
    if checkpoint.is_checkpoint(path):
        return path, False
    run_dual_reward(load_model(p.model), replace(SMOKE_TRAIN), output=path, answers=False)
    return path, True
