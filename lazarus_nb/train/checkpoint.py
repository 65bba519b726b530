"""Checkpoints (docs/science.md "Checkpoint"): ``lora_weights.npz`` + ``config.json``, an mlx-lm adapter in the
same directory, the training history, and the optimizer state for ``--resume``.

Directory layout::

    lora_weights.npz          layer_{i}_{v|o}_{A|B}; A (in, r), B (r, out)
    config.json               the run (model, layers, hyperparameters, class tokens, versions, status,
                              results): a ``config.RunRecord``
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
import re
import shutil
import tempfile
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from lazarus_nb.data.prompts import heldout_fingerprint
from lazarus_nb.errors import LazarusError
from lazarus_nb.files import check_output
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.train.history import History
from lazarus_nb.train.record import RunRecord
from lazarus_nb.train.state import TrainState

# model.lora imports mlx-lm, which takes seconds: the functions that apply or read adapters import it when called,
# so the CLI, which imports this module at start, checks a request before mlx-lm loads.


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


def check_writable(path: str | Path, force: bool = False, field: str = "output") -> Path:
    """Refuse (one sentence) to write a checkpoint over a file, or over a directory that holds files (another
    checkpoint: continue it with ``--resume``) without ``force``."""
    held = is_checkpoint(path)
    return check_output(path, "dir", force, field=field, holds="a checkpoint" if held else "files",
                        advice="use --force to overwrite it or --resume to continue it" if held else None)


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


def run_record(loaded: LoadedModel, state: TrainState, results: dict[str, Any] | None = None) -> RunRecord:
    """The :class:`~lazarus_nb.train.record.RunRecord` of a TrainState, with ``results`` (``config.json`` keys)
    set."""
    from lazarus_nb.model.lora import LoraConfig  # mlx-lm: loaded when called (see the imports)

    facts = loaded.facts()
    tokens = state.class_tokens
    record = RunRecord(
        model=loaded.name,
        train=replace(state.config, classifier_layer=state.classifier_layer, lora_layers=state.adapted_layers),
        class_tokens=tokens.as_dict(),
        class_token_strings=dict(zip(tokens.words, tokens.strings)),
        steps_completed=state.step,
        status=state.status,
        stop_reason=state.stop_reason,
        lora_targets=list(LoraConfig().targets),
        trainable_params=state.trainable_params,
        train_seconds=state.seconds,
        architecture={k: facts[k] for k in ("model_type", "num_layers", "hidden_size", "kv_width", "vocab_size")},
        versions=_versions(),
        heldout_fingerprint=heldout_fingerprint(state.heldout),
    )
    return record.updated(**(results or {}))


def save(path: str | Path, loaded: LoadedModel, state: TrainState, results: dict[str, Any] | None = None) -> Path:
    """Write the full checkpoint of ``state`` atomically (see module doc); ``results`` go into config.json."""
    from lazarus_nb.model.lora import TARGETS, lora_arrays  # mlx-lm: loaded when called (see the imports)

    path = Path(path)
    arrays = lora_arrays(loaded.model)
    mlx_names = {k: v for k, v in tree_flatten(loaded.model.trainable_parameters())}
    record = run_record(loaded, state, results)
    n_layers = loaded.num_layers
    adapter_config = {
        "fine_tune_type": "lora",
        # mlx-lm adapts the *last* num_layers blocks; blocks in that range we did not adapt get no weights
        # from us and keep B = 0, i.e. they stay exactly the base model.
        "num_layers": n_layers - min(state.adapted_layers),
        "lora_parameters": {"rank": record.train.lora_rank, "scale": record.train.lora_scale,
                            "dropout": record.lora_dropout, "keys": [TARGETS[t] for t in record.lora_targets]},
        "model": loaded.name,
    }
    opt_state = dict(tree_flatten(state.optimizer.state))

    def write(tmp: Path) -> None:
        np.savez(tmp / NPZ, **{k: np.array(v) for k, v in arrays.items()})
        mx.save_safetensors(str(tmp / MLX_ADAPTER), mlx_names)
        mx.save_safetensors(str(tmp / OPTIMIZER), opt_state)
        record.write(tmp / CONFIG)
        (tmp / MLX_CONFIG).write_text(json.dumps(adapter_config, indent=2))
        (tmp / HISTORY).write_text(json.dumps(state.history.to_dict()))

    _atomic_dir_write(path, write)
    return path


def update_record(path: str | Path, **values: Any) -> RunRecord:
    """Set ``config.json`` keys (e.g. final_accuracy) of a saved checkpoint, atomically; the new record."""
    record = read_record(path).updated(**values)
    record.write(Path(path) / CONFIG)
    return record


def _check_dir(path: Path) -> None:
    if not path.exists():
        raise LazarusError(f"adapter directory '{path}' does not exist")
    if not is_checkpoint(path):
        raise LazarusError(f"'{path}' is not a checkpoint (no {CONFIG} or {MLX_CONFIG})")


def read_record(path: str | Path) -> RunRecord:
    """The run record of a lazarus_nb checkpoint; one sentence if ``path`` holds none."""
    record = read_adapter_record(path)
    if record is None:
        raise LazarusError(f"'{path}' holds a plain mlx-lm adapter, not a lazarus_nb training checkpoint")
    return record


def read_adapter_record(path: str | Path) -> RunRecord | None:
    """The run record of an adapter directory, or None for a plain mlx-lm adapter (no config.json)."""
    path = Path(path)
    _check_dir(path)
    return RunRecord.read(path / CONFIG) if (path / CONFIG).is_file() else None


def adapter_model(path: str | Path) -> str | None:
    """The model an adapter directory was trained on (its config.json, or mlx-lm's adapter_config.json)."""
    record = read_adapter_record(path)
    if record is not None:
        return record.model
    try:
        model = json.loads((Path(path) / MLX_CONFIG).read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return None
    return model if isinstance(model, str) else None


def read_history(path: str | Path) -> History:
    """The training history (losses and logit-lens snapshots) saved in a checkpoint; one sentence if ``path``
    holds none or it cannot be read. Older checkpoints' snapshots read too (``History.from_dict``)."""
    path = Path(path)
    _check_dir(path)
    if not (path / HISTORY).is_file():
        raise LazarusError(f"'{path}' holds no training history ({HISTORY}); a plain mlx-lm adapter has none")
    try:
        return History.from_dict(json.loads((path / HISTORY).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LazarusError(f"cannot read the training history in '{path}': {str(exc).splitlines()[0]}") from None


def resumable_record(path: str | Path | None) -> RunRecord:
    """The record of the checkpoint to continue at ``path``; one sentence if there is none to resume."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise LazarusError(f"nothing to resume: '{path}' is a file, not a checkpoint directory")
    if path is None or not is_checkpoint(path):
        raise LazarusError(f"nothing to resume: '{path}' holds no checkpoint")
    if not (Path(path) / CONFIG).is_file():
        raise LazarusError(f"'{path}' is not a lazarus_nb training checkpoint, so it cannot be resumed")
    return RunRecord.read(Path(path) / CONFIG)


def _refuse_other_model(path: Path, record: RunRecord | None, mine: dict[str, Any]) -> None:
    """The one "trained on another model" rule: the record's architecture against the model's known facts."""
    arch = record.architecture if record is not None else {}
    diff = [f"{k} {arch[k]} vs {v}" for k, v in mine.items() if v is not None and k in arch and arch[k] != v]
    if diff:
        raise LazarusError(f"the adapter in '{path}' was trained on another model ({record.model}): "
                           + ", ".join(diff))


# An adapter matrix's key: ours (``layer_3_v_B``) or mlx-lm's (``model.layers.3.self_attn.v_proj.lora_b``).
_LORA_KEY = re.compile(r"^layer_(\d+)_([vo])_([AB])$|(?:^|\.)layers\.(\d+)\.self_attn\.([vo])_proj\.lora_([ab])$")


def _nonfinite(value: Any) -> int:
    """How many entries of a numpy or mlx array are NaN or infinite."""
    if isinstance(value, np.ndarray):
        return int(value.size - np.count_nonzero(np.isfinite(value)))
    return int((~mx.isfinite(value)).sum().item())


def check_arrays(path: Path, file: str, arrays: dict[str, Any], rank: int | None,
                 widths: dict[str, tuple[int, int]] | None = None) -> None:
    """The one rule for an adapter file's content: every array is finite, is the LoRA A or B matrix of a V or O
    projection, and has the shape the configs promise: A (in, rank), B (rank, out), where (in, out) are the
    model's ``LoadedModel.projection_widths()`` once it is loaded (before, only the rank is checked). One
    sentence naming the file and the key otherwise."""
    where = path / file
    for key, value in arrays.items():
        bad = _nonfinite(value)
        if bad:
            raise LazarusError(f"the adapter '{where}' cannot be used: '{key}' holds {bad:,} non-finite "
                               f"value{'s' if bad != 1 else ''} (NaN or infinity)")
        match = _LORA_KEY.search(key)
        if match is None:
            raise LazarusError(f"the adapter '{where}' holds '{key}', which is not a LoRA matrix of a V or O "
                               "projection")
        _, target, part = (g for g in match.groups() if g is not None)
        fan_in, fan_out = widths[target] if widths else (None, None)
        want = (fan_in, rank) if part in "Aa" else (rank, fan_out)
        shape = tuple(value.shape)
        if len(shape) != 2 or any(w is not None and n != w for n, w in zip(shape, want)):
            shown = "(" + ", ".join("any" if w is None else str(w) for w in want) + ")"
            raise LazarusError(f"the adapter '{where}' does not fit: '{key}' has shape {shape}, but LoRA "
                               f"{part.upper()} of the {target.upper()} projection at rank {rank} needs {shown}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not (path / NPZ).is_file():
        raise LazarusError(f"could not load the adapter in '{path}': it has no {NPZ}")
    try:
        with np.load(path / NPZ) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # not a zip, truncated, pickled objects...: one sentence
        raise LazarusError(f"could not load the adapter in '{path}': {NPZ} is not a readable .npz archive "
                           f"({type(exc).__name__})") from None


def _mlx_rank(path: Path) -> int | None:
    """The rank adapter_config.json promises (None if it does not say; loading it then fails on its own)."""
    try:
        rank = json.loads((path / MLX_CONFIG).read_text())["lora_parameters"]["rank"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rank if isinstance(rank, int) else None


def _adapter_files(path: Path, record: RunRecord | None) -> dict[str, tuple[dict[str, Any], int | None]]:
    """Every adapter file of a checkpoint directory: {file: (its arrays, the rank its config promises)}."""
    files: dict[str, tuple[dict[str, Any], int | None]] = {}
    if (path / NPZ).is_file():
        files[NPZ] = (_read_npz(path), record.train.lora_rank if record is not None else None)
    if (path / MLX_ADAPTER).is_file():
        try:
            weights = mx.load(str(path / MLX_ADAPTER))
        except Exception as exc:
            raise LazarusError(f"could not load the adapter in '{path}': {MLX_ADAPTER} is not a readable "
                               f"safetensors file ({type(exc).__name__})") from None
        files[MLX_ADAPTER] = (weights, _mlx_rank(path))
    return files


def check_adapter(path: str | Path, model_config: dict[str, Any] | None,
                  record: RunRecord | None = None) -> RunRecord | None:
    """Before loading the model: refuse an adapter trained on another architecture (``model_config`` is the
    model's config.json), or whose files are unreadable, hold a non-finite value or a matrix of another rank
    (``check_arrays``); ``load_adapter`` checks all of it again after, with the model's widths. ``record``: its
    run record when the caller has read it already (None: read here)."""
    path = Path(path)
    record = record or read_adapter_record(path)
    if model_config:
        _refuse_other_model(path, record, {
            "model_type": model_config.get("model_type"), "num_layers": model_config.get("num_hidden_layers"),
            "hidden_size": model_config.get("hidden_size"), "vocab_size": model_config.get("vocab_size")})
    for file, (arrays, rank) in _adapter_files(path, record).items():
        check_arrays(path, file, arrays, rank)
    return record


def load_adapter(loaded: LoadedModel, path: str | Path, record: RunRecord | None = None) -> RunRecord | None:
    """Apply the checkpoint's LoRA adapters to ``loaded.model`` from disk; return its run record (None for a
    plain mlx-lm adapter directory). ``record``: the run record when the caller has read it already.

    Accepts our checkpoints (``lora_weights.npz`` preferred) and plain mlx-lm adapter directories
    (``adapters.safetensors`` + ``adapter_config.json``, V/O keys only).
    """
    # mlx-lm: loaded when called (see the imports)
    from lazarus_nb.model.lora import LoraConfig, adapters, apply_lora, set_lora_arrays

    path = Path(path)
    record = record or read_adapter_record(path)
    _refuse_other_model(path, record, loaded.facts())
    if adapters(loaded.model):
        raise LazarusError("this model already carries adapters; load a fresh model before loading another")
    files = _adapter_files(path, record)
    for file, (arrays, rank) in files.items():
        check_arrays(path, file, arrays, rank, loaded.projection_widths())
    try:
        if NPZ in files and record is not None:
            lora = LoraConfig(rank=record.train.lora_rank, scale=record.train.lora_scale,
                              layers=record.train.lora_layers, targets=tuple(record.lora_targets))
            apply_lora(loaded.model, lora)
            set_lora_arrays(loaded.model, {k: mx.array(v) for k, v in files[NPZ][0].items()})
        elif MLX_ADAPTER in files and (path / MLX_CONFIG).is_file():
            _load_mlx_adapter(loaded, path, json.loads((path / MLX_CONFIG).read_text()), files[MLX_ADAPTER][0])
        else:
            raise LazarusError(f"'{path}' has neither {NPZ} nor {MLX_ADAPTER} with {MLX_CONFIG}")
    except LazarusError:
        raise
    except Exception as exc:  # corrupt file, wrong shapes, missing keys: one sentence, no traceback
        from lazarus_nb.model.lora import remove_adapters  # mlx-lm: loaded when called (see the imports)

        remove_adapters(loaded.model)
        raise LazarusError(f"could not load the adapter in '{path}': {str(exc).splitlines()[0]}") from None
    loaded.model.eval()
    return record


def attached(loaded: LoadedModel) -> dict[str, Any]:
    """What is actually attached to the model (proof that an adapter was applied): layers, rank, targets and
    trainable parameters."""
    from lazarus_nb.model.lora import adapters, trainable_count  # mlx-lm: loaded when called (see the imports)

    found = adapters(loaded.model)
    ranks = sorted({int(m.lora_a.shape[1]) for m in found.values()})
    return {"layers": sorted({i for i, _ in found}), "rank": ranks[0] if len(ranks) == 1 else ranks,
            "targets": sorted({t for _, t in found}, key="vo".index), "parameters": trainable_count(loaded.model)}


def _load_mlx_adapter(loaded: LoadedModel, path: Path, config: dict[str, Any], weights: dict[str, mx.array]) -> None:
    from lazarus_nb.model.lora import TARGETS, LoraConfig, apply_lora  # mlx-lm: loaded when called (see the imports)

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
    expected = dict(tree_flatten(loaded.model.trainable_parameters()))
    bad = [k for k, v in weights.items() if k not in expected or expected[k].shape != v.shape]
    if bad:
        raise ValueError(f"tensors that do not fit this model: {bad[:3]}")
    loaded.model.load_weights(list(weights.items()), strict=False)


def load_optimizer_state(path: str | Path) -> dict[str, Any]:
    """The saved Adam state as a nested tree for ``optimizer.state``."""
    return tree_unflatten(list(mx.load(str(Path(path) / OPTIMIZER)).items()))


def restore_into(loaded: LoadedModel, path: str | Path, state: TrainState, record: RunRecord) -> None:
    """Overwrite a freshly prepared TrainState (adapters applied) with the progress of the run saved at ``path``
    (``record``: its run record, ``resumable_record``'s)."""
    from lazarus_nb.model.lora import set_lora_arrays  # mlx-lm: loaded when called (see the imports)

    path = Path(path)
    arrays = _read_npz(path)
    check_arrays(path, NPZ, arrays, record.train.lora_rank, loaded.projection_widths())
    try:
        set_lora_arrays(loaded.model, {k: mx.array(v) for k, v in arrays.items()})
        state.optimizer.state = load_optimizer_state(path)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise LazarusError(f"cannot resume from '{path}': {str(exc).splitlines()[0]}") from None
    state.history = read_history(path)
    state.step = record.steps_completed
    state.seconds = record.train_seconds
    state.stop_reason = record.stop_reason
    state.history.steps = state.history.steps[: state.step]
    state.history.snapshots = [s for s in state.history.snapshots if s.step <= state.step]
