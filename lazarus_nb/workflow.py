"""The four steps as functions: baseline probe, baseline lens, dual-reward training, verify.

The CLI and the notebooks both call these, so a result in a notebook is the result the CLI prints.
Each returns a dataclass with ``to_dict()`` (the CLI's ``--json`` payload).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from . import checkpoint
from .data import CANONICAL, CLASSES, Sample, generate, train_heldout_split, word_prompts
from .errors import LazarusError
from .evaluate import Evaluation, evaluate
from .lens import LogitLens, forward_hidden, readout
from .lora import disabled
from .models import LoadedModel, load_model
from .probe import ProbeConfig, ProbeResult, probe_layers
from .tokens import ClassTokens, class_tokens_from_ids, prompt_batch, resolve_class_tokens, resolve_word
from .train import TrainConfig, TrainEvent, TrainState, prepare, train

# ---------------------------------------------------------------- step 1: probe


def last_token_hidden(loaded: LoadedModel, prompts: Sequence[str], chunk: int = 64) -> np.ndarray:
    """(num_layers, N, D) float32 hidden states at each prompt's last token (the classification position)."""
    out = []
    for i in range(0, len(prompts), chunk):
        tokens, last = prompt_batch(loaded.tokenizer, prompts[i : i + chunk])
        hidden, _ = forward_hidden(loaded.model, tokens)
        rows = mx.arange(tokens.shape[0])
        out.append(np.stack([np.array(h[rows, last].astype(mx.float32)) for h in hidden]))
    return np.concatenate(out, axis=1)


def probe_samples(prompt_set: str, n: int, seed: int = 0) -> list[Sample]:
    """The generated arithmetic prompts for probing: "symbolic" (``7 * 8 = ``) or "words"."""
    if prompt_set == "symbolic":
        return generate(n, seed)
    if prompt_set == "words":
        return word_prompts(n, seed)
    raise LazarusError(f"prompt set must be 'symbolic' or 'words', got '{prompt_set}'")


def run_probe(
    loaded: LoadedModel,
    prompts: Sequence[str],
    labels: Sequence[int],
    class_names: Sequence[str],
    layers: Sequence[int] | None = None,
    config: ProbeConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> ProbeResult:
    """Baseline step 1: per-layer logistic probes (k-fold CV + shuffled-label control).
    ``progress(layer)`` is called as each layer's probe finishes."""
    if len(set(labels)) < 2:
        raise LazarusError("a probe needs prompts of at least two classes")
    counts = {c: list(labels).count(i) for i, c in enumerate(class_names)}
    small = [c for c, k in counts.items() if 0 < k < 2]
    if small:
        raise LazarusError(f"each class needs at least 2 prompts for cross-validation; '{small[0]}' has 1")
    hidden = last_token_hidden(loaded, list(prompts))
    try:
        return probe_layers(hidden, np.array(labels), layers, config, n_classes=len(class_names),
                            progress=progress)
    except ValueError as exc:
        raise LazarusError(str(exc)) from None


# ---------------------------------------------------------------- step 2 and 4: lens


@dataclass
class LensReport:
    """Logit lens per prompt and layer for a list of target words (CLI ``logit-lens``)."""

    layers: list[int]
    targets: dict[str, int]  # word -> token id
    prompts: list[dict[str, Any]]  # {"prompt", "layers": [{"layer", "targets": {w: {id, prob, rank}}, "top"}]}
    summary: dict[str, dict[str, int]]  # word -> {"top_count": prompts with it top-1 at the last layer shown, "n"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_lens(
    loaded: LoadedModel,
    prompts: Sequence[str],
    targets: Sequence[str],
    layers: Sequence[int] | None = None,
    top_k: int = 5,
    class_tokens: ClassTokens | None = None,
) -> LensReport:
    """Read the lens at each prompt's last token, for every layer in ``layers`` (default all).

    ``class_tokens`` (a checkpoint's): targets that are its class words use exactly its ids (SPEC "Class
    tokens"); other targets are resolved from the tokenizer."""
    if not targets:
        raise LazarusError("give at least one target word")
    known = class_tokens.as_dict() if class_tokens is not None else {}
    ids = {w: known[w] if w in known else resolve_word(loaded.tokenizer, w)[0] for w in targets}
    tokens, last = prompt_batch(loaded.tokenizer, list(prompts))
    r = readout(LogitLens(loaded.model), tokens, last, list(ids.values()), layers, top_k)
    probs, ranks = np.array(r.probs), np.array(r.ranks)
    top_ids, top_probs = np.array(r.top_ids), np.array(r.top_probs)
    decode = loaded.tokenizer.decode
    report = []
    for b, p in enumerate(prompts):
        per_layer = []
        for li, layer in enumerate(r.layers):
            per_layer.append({
                "layer": layer,
                "targets": {w: {"id": i, "prob": float(probs[li, b, k]), "rank": int(ranks[li, b, k])}
                            for k, (w, i) in enumerate(ids.items())},
                "top": [[decode([int(t)]), float(q)] for t, q in zip(top_ids[li, b], top_probs[li, b])],
            })
        report.append({"prompt": p, "layers": per_layer})
    summary = {w: {"top_count": int((ranks[-1, :, k] == 0).sum()), "n": len(prompts)} for k, w in enumerate(ids)}
    return LensReport(list(r.layers), ids, report, summary)


# ---------------------------------------------------------------- step 3: train


@dataclass
class DualRewardResult:
    """Everything the dual-reward step reports (the CLI's JSON and the notebooks' tables)."""

    model: str
    num_layers: int
    classifier_layer: int
    class_tokens: ClassTokens
    trainable_params: int
    state: TrainState
    baseline: Evaluation
    final: Evaluation
    checkpoint: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, ev: Evaluation) -> dict[str, Any]:
        return {
            "canonical_correct": ev.canonical_correct,
            "heldout_restricted_accuracy": ev.heldout_restricted_accuracy,
            "heldout_top1_accuracy": ev.heldout_top1_accuracy,
            "heldout_prob": ev.heldout_prob,
            "answer_accuracy": ev.answers.accuracy if ev.answers else None,
            "answer_accuracy_by_class": ev.answers.by_class if ev.answers else None,
            "answer_prefix_accuracy": ev.answers.prefix_accuracy if ev.answers else None,
            "canonical": [asdict(r) for r in ev.canonical],
        }

    def to_dict(self) -> dict[str, Any]:
        hist = self.state.history
        return {
            "model": self.model,
            "num_layers": self.num_layers,
            "classifier_layer": self.classifier_layer,
            "class_tokens": self.class_tokens.as_dict(),
            "class_token_strings": dict(zip(self.class_tokens.words, self.class_tokens.strings)),
            "trainable_params": self.trainable_params,
            "config": asdict(self.state.config),
            "history": [{"step": s.step, "total": s.total, "cls_loss": s.cls_loss, "ans_loss": s.ans_loss}
                        for s in hist.steps],
            "snapshots": [asdict(s) for s in hist.snapshots],
            "baseline": self.summary(self.baseline),
            "final": self.summary(self.final),
            "baseline_lens": self.baseline.lens.to_dict(),
            "final_lens": self.final.lens.to_dict(),
            "checkpoint": self.checkpoint,
            "train_seconds": self.state.seconds,
            "status": self.state.status,
            **self.extra,
        }


def resume_state(loaded: LoadedModel, path: str | Path) -> TrainState:
    """Rebuild the TrainState of a saved (e.g. interrupted) run: adapters, Adam state, history, step."""
    saved = checkpoint.read_config(path)
    if "steps_completed" not in saved:
        raise LazarusError(f"'{path}' is not a lazarus_nb training checkpoint, so it cannot be resumed")
    keys = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: saved[k] for k in keys if k in saved})
    state = prepare(loaded, cfg, class_tokens=class_tokens_from_ids(loaded.tokenizer, saved["class_tokens"]))
    checkpoint.restore_into(loaded, path, state)
    return state


def run_dual_reward(
    loaded: LoadedModel,
    config: TrainConfig,
    output: str | Path | None = None,
    force: bool = False,
    resume: bool = False,
    callback: Callable[[TrainEvent], None] | None = None,
    answers: bool = True,
) -> DualRewardResult:
    """Step 3: baseline evaluation, dual-reward training (checkpointing into ``output``), final evaluation.

    ``output`` None writes nothing. An existing checkpoint there is refused unless ``force`` (start over)
    or ``resume`` (continue it from its last completed step).
    """
    if output is not None and not resume:
        checkpoint.check_writable(output, force)
    if resume:
        if output is None or not checkpoint.is_checkpoint(output):
            raise LazarusError(f"nothing to resume: '{output}' holds no checkpoint")
        state = resume_state(loaded, output)
    else:
        state = prepare(loaded, config)
    lens = LogitLens(loaded.model)
    # Baseline = the base model. At step 0 the adapters have B = 0, so the adapted model *is* the base
    # model; a resumed run switches its trained adapters off for this evaluation.
    with disabled(loaded.model):
        baseline = evaluate(lens, loaded.tokenizer, state.class_tokens, state.heldout, CANONICAL,
                            state.classifier_layer, answers=answers)
    baseline_extra = {
        "baseline_answer_accuracy": baseline.answers.accuracy if baseline.answers else None,
        "baseline_answer_prefix_accuracy": baseline.answers.prefix_accuracy if baseline.answers else None,
    }

    def save(st: TrainState) -> None:
        if output is not None:
            checkpoint.save(output, loaded, st, baseline_extra)

    train(loaded, state, callback=callback, save=save)
    final = evaluate(lens, loaded.tokenizer, state.class_tokens, state.heldout, CANONICAL,
                     state.classifier_layer, answers=answers)
    if output is not None:
        checkpoint.save(output, loaded, state, {
            **baseline_extra,
            "final_accuracy": final.canonical_correct / len(final.canonical),
            "final_heldout_restricted_accuracy": final.heldout_restricted_accuracy,
            "final_heldout_top1_accuracy": final.heldout_top1_accuracy,
            "final_answer_accuracy": final.answers.accuracy if final.answers else None,
            "final_answer_prefix_accuracy": final.answers.prefix_accuracy if final.answers else None,
        })
    return DualRewardResult(loaded.name, loaded.num_layers, state.classifier_layer, state.class_tokens,
                            state.trainable_params, state, baseline, final,
                            str(output) if output is not None else None)


# ---------------------------------------------------------------- step 4: verify


@dataclass
class VerifyResult:
    """The lens re-run with the adapter loaded from disk, next to the base model."""

    checkpoint: str
    config: dict[str, Any]
    base: Evaluation
    adapted: Evaluation

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "classifier_layer": self.adapted.layer,
                "base": self.base.to_dict(), "adapted": self.adapted.to_dict()}


def verify(path: str | Path, model: str | None = None, answers: bool = True,
           heldout: Sequence[Sample] | None = None) -> VerifyResult:
    """Step 4: load the base model fresh, evaluate it, load the adapter *from disk*, evaluate again."""
    saved = checkpoint.read_config(path)
    loaded = load_model(model or saved["model"])
    tokens = class_tokens_from_ids(loaded.tokenizer, saved["class_tokens"])
    if heldout is None:
        _, heldout = train_heldout_split(saved["num_samples"], saved["heldout_samples"], saved["seed"])
    layer = saved["classifier_layer"]
    lens = LogitLens(loaded.model)
    base = evaluate(lens, loaded.tokenizer, tokens, heldout, CANONICAL, layer, answers)
    checkpoint.load_adapter(loaded, path)
    adapted = evaluate(lens, loaded.tokenizer, tokens, heldout, CANONICAL, layer, answers)
    return VerifyResult(str(path), saved, base, adapted)


__all__ = ["CLASSES", "DualRewardResult", "LensReport", "VerifyResult", "last_token_hidden", "probe_samples",
           "resume_state", "run_dual_reward", "run_lens", "run_probe", "verify", "resolve_class_tokens"]
