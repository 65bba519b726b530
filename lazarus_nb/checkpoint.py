"""Checkpoints: SPEC's ``lora_weights.npz`` + ``config.json``, an mlx-lm adapter in the same directory,
the training history, and the optimizer state for ``--resume``.

Directory layout::

    lora_weights.npz          layer_{i}_{v|o}_{A|B}; A (in, r), B (r, out)
    config.json               the run (model, layers, hyperparameters, class tokens, versions, status)
    adapters.safetensors      the same matrices under mlx-lm names
    adapter_config.json       so `mlx_lm.generate --model M --adapter-path DIR` works
    history.json              per-step losses and per-snapshot logit-lens metrics
    optimizer.safetensors     Adam moments and step count (for resume)

Every save writes a complete sibling directory first and then swaps it in, so a crash or Ctrl-C never
leaves a half-written checkpoint; the previous checkpoint survives until the new one is in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from .atomic import atomic_file
from .errors import LazarusError
from .models import LoadedModel

# `.lora` imports mlx-lm (~2 s): it is imported inside the functions that touch weights, so the CLI can use
# the file-level checks here (is_checkpoint, read_config, check_writable) and fail bad input instantly.

CONFIG = "config.json"
NPZ = "lora_weights.npz"
MLX_ADAPTER = "adapters.safetensors"
MLX_CONFIG = "adapter_config.json"
HISTORY = "history.json"
OPTIMIZER = "optimizer.safetensors"


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("lazarus-nb", "mlx", "mlx-lm", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def is_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return (path / CONFIG).is_file() or (path / MLX_CONFIG).is_file()


def check_writable(path: str | Path, force: bool = False) -> Path:
    """Refuse (one sentence) to write over a file, or over an existing checkpoint without ``force``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LazarusError(f"output path '{path}' is a file, not a directory")
    if is_checkpoint(path) and not force:
        raise LazarusError(f"'{path}' already holds a checkpoint; use --force to overwrite it or --resume")
    if path.is_dir() and any(path.iterdir()) and not is_checkpoint(path) and not force:
        raise LazarusError(f"'{path}' is a non-empty directory that is not a checkpoint; choose another path")
    return path


def _atomic_dir_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
    old = path.parent / f".{path.name}.old"
    try:
        write(tmp)
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not path.exists() and old.exists():
            os.replace(old, path)  # put the previous checkpoint back
        raise


def run_config(loaded: LoadedModel, state: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config.json`` content for a TrainState (SPEC fields first, then what a rebuild needs)."""
    cfg = state.config
    out = {
        "model": loaded.name,
        "classifier_layer": state.classifier_layer,
        "lora_rank": cfg.lora_rank,
        "cls_weight": cfg.cls_weight,
        "steps": cfg.steps,
        "final_accuracy": None,
        "steps_completed": state.step,
        "status": state.status,
        "learning_rate": cfg.learning_rate,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "num_samples": cfg.num_samples,
        "heldout_samples": cfg.heldout_samples,
        "snapshot_every": cfg.snapshot_every,
        "snapshot_size": cfg.snapshot_size,
        "checkpoint_every": cfg.checkpoint_every,
        "lora_scale": cfg.lora_scale,
        "lora_dropout": 0.0,
        "lora_layers": state.adapted_layers,
        "lora_targets": list(cfg.lora().targets),
        "class_tokens": state.class_tokens.as_dict(),
        "class_token_strings": dict(zip(state.class_tokens.words, state.class_tokens.strings)),
        "trainable_params": state.trainable_params,
        "train_seconds": state.seconds,
        "architecture": {k: loaded.facts()[k] for k in ("model_type", "num_layers", "hidden_size", "kv_width",
                                                         "vocab_size")},
        "versions": _versions(),
    }
    out.update(extra or {})
    return out


def save(path: str | Path, loaded: LoadedModel, state: Any, extra: dict[str, Any] | None = None) -> Path:
    """Write the full checkpoint of ``state`` atomically (see module doc)."""
    from .lora import TARGETS, lora_arrays

    path = Path(path)
    arrays = lora_arrays(loaded.model)
    mlx_names = {k: v for k, v in tree_flatten(loaded.model.trainable_parameters())}
    config = run_config(loaded, state, extra)
    n_layers = loaded.num_layers
    adapter_config = {
        "fine_tune_type": "lora",
        # mlx-lm adapts the *last* num_layers blocks; blocks in that range we did not adapt get no weights
        # from us and keep B = 0, i.e. they stay exactly the base model.
        "num_layers": n_layers - min(state.adapted_layers),
        "lora_parameters": {"rank": config["lora_rank"], "scale": config["lora_scale"], "dropout": 0.0,
                            "keys": [TARGETS[t] for t in config["lora_targets"]]},
        "model": loaded.name,
    }
    opt_state = dict(tree_flatten(state.optimizer.state))

    def write(tmp: Path) -> None:
        np.savez(tmp / NPZ, **{k: np.array(v) for k, v in arrays.items()})
        mx.save_safetensors(str(tmp / MLX_ADAPTER), mlx_names)
        mx.save_safetensors(str(tmp / OPTIMIZER), opt_state)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
        (tmp / MLX_CONFIG).write_text(json.dumps(adapter_config, indent=2))
        (tmp / HISTORY).write_text(json.dumps(state.history.to_dict()))

    _atomic_dir_write(path, write)
    return path


def update_config(path: str | Path, **fields: Any) -> None:
    """Add result fields (e.g. final_accuracy) to a saved config.json, atomically."""
    path = Path(path) / CONFIG
    data = json.loads(path.read_text())
    data.update(fields)
    with atomic_file(path) as fh:
        fh.write(json.dumps(data, indent=2))


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise LazarusError(f"adapter directory '{path}' does not exist")
    if not is_checkpoint(path):
        raise LazarusError(f"'{path}' is not a checkpoint (no {CONFIG} or {MLX_CONFIG})")
    try:
        return json.loads((path / (CONFIG if (path / CONFIG).is_file() else MLX_CONFIG)).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LazarusError(f"the checkpoint config in '{path}' is unreadable: {exc}") from None


def _check_architecture(config: dict[str, Any], loaded: LoadedModel, path: Path) -> None:
    arch = config.get("architecture")
    if not arch:
        return
    mine = loaded.facts()
    diff = [f"{k} {arch[k]} vs {mine[k]}" for k in arch if k in mine and arch[k] != mine[k]]
    if diff:
        raise LazarusError(
            f"the adapter in '{path}' was trained on another model ({config.get('model')}): " + ", ".join(diff)
        )


def load_adapter(loaded: LoadedModel, path: str | Path) -> dict[str, Any]:
    """Apply the checkpoint's LoRA adapters to ``loaded.model`` from disk; return its config.

    Accepts our checkpoints (``lora_weights.npz`` preferred) and plain mlx-lm adapter directories
    (``adapters.safetensors`` + ``adapter_config.json``, V/O keys only).
    """
    from .lora import LoraConfig, adapters, apply_lora, set_lora_arrays

    path = Path(path)
    config = read_config(path)
    _check_architecture(config, loaded, path)
    if adapters(loaded.model):
        raise LazarusError("this model already carries adapters; load a fresh model before loading another")
    try:
        if (path / NPZ).is_file():
            lora = LoraConfig(rank=config["lora_rank"], scale=config["lora_scale"], layers=config["lora_layers"],
                              targets=tuple(config["lora_targets"]))
            with np.load(path / NPZ) as npz:
                arrays = {k: mx.array(npz[k]) for k in npz.files}
            apply_lora(loaded.model, lora)
            set_lora_arrays(loaded.model, arrays)
        elif (path / MLX_ADAPTER).is_file() and (path / MLX_CONFIG).is_file():
            _load_mlx_adapter(loaded, path, json.loads((path / MLX_CONFIG).read_text()))
        else:
            raise LazarusError(f"'{path}' has neither {NPZ} nor {MLX_ADAPTER} with {MLX_CONFIG}")
    except LazarusError:
        raise
    except Exception as exc:  # corrupt file, wrong shapes, missing keys: one sentence, no traceback
        from mlx_lm.tuner.utils import remove_lora_layers

        remove_lora_layers(loaded.model)
        raise LazarusError(f"could not load the adapter in '{path}': {str(exc).splitlines()[0]}") from None
    loaded.model.eval()
    return config


def _load_mlx_adapter(loaded: LoadedModel, path: Path, config: dict[str, Any]) -> None:
    from .lora import TARGETS, LoraConfig, apply_lora

    params = config["lora_parameters"]
    inverse = {v: k for k, v in TARGETS.items()}
    keys = params.get("keys") or list(TARGETS.values())
    unknown = [k for k in keys if k not in inverse]
    if unknown:
        raise LazarusError(f"adapter in '{path}' adapts {unknown}; lazarus_nb handles V/O adapters only")
    n = loaded.num_layers
    first = max(0, n - config["num_layers"]) if config["num_layers"] >= 0 else 0
    lora = LoraConfig(rank=params["rank"], scale=params["scale"], layers=list(range(first, n)),
                      targets=tuple(inverse[k] for k in keys))
    apply_lora(loaded.model, lora)
    weights = mx.load(str(path / MLX_ADAPTER))
    expected = dict(tree_flatten(loaded.model.trainable_parameters()))
    bad = [k for k, v in weights.items() if k not in expected or expected[k].shape != v.shape]
    if bad:
        raise ValueError(f"tensors that do not fit this model: {bad[:3]}")
    loaded.model.load_weights(list(weights.items()), strict=False)


def load_optimizer_state(path: str | Path) -> dict[str, Any]:
    """The saved Adam state as a nested tree for ``optimizer.state``."""
    return tree_unflatten(list(mx.load(str(Path(path) / OPTIMIZER)).items()))


def restore_into(loaded: LoadedModel, path: str | Path, state: Any) -> None:
    """Overwrite a freshly prepared TrainState (adapters applied) with a saved run's progress."""
    from .lora import set_lora_arrays
    from .train import History

    path = Path(path)
    saved = read_config(path)
    try:
        with np.load(path / NPZ) as npz:
            set_lora_arrays(loaded.model, {k: mx.array(npz[k]) for k in npz.files})
        state.optimizer.state = load_optimizer_state(path)
        state.history = History.from_dict(json.loads((path / HISTORY).read_text()))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise LazarusError(f"cannot resume from '{path}': {str(exc).splitlines()[0]}") from None
    state.step = saved["steps_completed"]
    state.seconds = saved.get("train_seconds", 0.0)
    state.history.steps = state.history.steps[: state.step]
    state.history.snapshots = [s for s in state.history.snapshots if s.step <= state.step]
