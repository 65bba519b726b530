"""The four steps and the demo: baseline probe, baseline lens, dual-reward training, verify, and
``run_demo`` (all four, writing JSON results and figures).

The CLI, the notebooks and the widgets call these, so a result in a notebook is the result the CLI prints.
Each step returns a dataclass whose ``to_dict()`` is that step's JSON: what the CLI prints with ``--json``
and what the demo and the notebooks write, whoever calls it. The long steps take a ``log`` (called with one
line of text at a time, from :mod:`lazarus_nb.report`), so a notebook can show the CLI's progress text.

mlx-lm (via ``train`` and ``lora``) is imported inside the functions that train, so importing this module
stays cheap and the CLI can run the checks here before it loads anything heavy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlx.core as mx
import numpy as np

from . import checkpoint, report
from . import sweep as sweeps
from .config import DEMO_TRAIN, RunRecord, TrainConfig
from .data import (
    CANONICAL,
    CLASSES,
    DEMO_PROBE_PROMPTS,
    PROBE_PROMPTS,
    Sample,
    heldout_fingerprint,
    probe_samples,
    target_words,
    train_heldout_split,
    word_forms,
)
from .errors import LazarusError
from .evaluate import Evaluation, evaluate
from .lens import LogitLens, forward_hidden, readout
from .models import DEFAULT_MODEL, LoadedModel, load_model
from .probe import ProbeConfig, ProbeResult, probe_layers
from .tokens import (
    ClassTokens,
    class_tokens_from_ids,
    encode_prompts,
    pad_prompts,
    prompt_batch,
    resolve_class_tokens,
    resolve_targets,
    trained_tokens,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .train import TrainEvent, TrainState

Log = Callable[[str], None]


def _quiet(line: str) -> None:
    """The default ``log``: steps run silently unless the caller wants the text."""


def load(model: str, log: Log = _quiet) -> LoadedModel:
    """``models.load_model`` with the CLI's two lines about what was loaded."""
    log(f"Loading model: {model}")
    t0 = time.perf_counter()
    loaded = load_model(model)
    log(report.model_loaded(loaded, time.perf_counter() - t0))
    return loaded


def _token_dicts(tokens: ClassTokens) -> dict[str, dict[str, Any]]:
    return {"class_tokens": tokens.as_dict(), "class_token_strings": dict(zip(tokens.words, tokens.strings))}


def _evaluate(loaded: LoadedModel, tokens: ClassTokens, heldout: Sequence[Sample], layer: int, answers: bool,
              terminator: str) -> Evaluation:
    """``evaluate`` of the model as it is now, with every control: the canonical prompts, the held-out set and
    the same problems as word prompts (cross-format transfer); with ``answers``, the answer half: greedy answers,
    answer NLL and collateral damage on the general text."""
    return evaluate(LogitLens(loaded.model), loaded.tokenizer, tokens, heldout, CANONICAL, layer, answers,
                    terminator, words=word_forms(heldout), general=answers, context_length=loaded.context_length)


# ---------------------------------------------------------------- step 1: probe


def last_token_hidden(loaded: LoadedModel, prompts: Sequence[str], chunk: int = 64) -> np.ndarray:
    """(num_layers, N, D) float32 hidden states at each prompt's last token (the classification position).
    Every prompt is encoded and length-checked before the first chunk runs."""
    encoded = encode_prompts(loaded.tokenizer, prompts, loaded.context_length)
    out = []
    for i in range(0, len(encoded), chunk):
        tokens, last = pad_prompts(loaded.tokenizer, encoded[i : i + chunk])
        hidden, _ = forward_hidden(loaded.model, tokens)
        rows = mx.arange(tokens.shape[0])
        out.append(np.stack([np.array(h[rows, last].astype(mx.float32)) for h in hidden]))
    return np.concatenate(out, axis=1)


def run_probe(
    loaded: LoadedModel,
    prompts: Sequence[str],
    labels: Sequence[int],
    class_names: Sequence[str],
    layers: Sequence[int] | None = None,
    config: ProbeConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> ProbeResult:
    """Per-layer logistic probes (k-fold CV + shuffled-label control) on any labelled prompts.
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


@dataclass
class ProbeReport:
    """Step 1 on one prompt family: ``to_dict()`` is ``introspect classifier --json`` and one entry of the
    demo's and notebook 01's ``probe.json``."""

    model: str
    num_layers: int
    prompt_set: str  # "symbolic", "words" or "custom"
    seed: int  # of the generated prompts, the folds and the control
    classes: dict[str, list[str]]  # class name -> its prompts
    result: ProbeResult

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "num_layers": self.num_layers, "prompt_set": self.prompt_set,
                "seed": self.seed, "classes": self.classes, **self.result.to_dict()}


def _probe(loaded: LoadedModel, prompt_set: str, seed: int, classes: dict[str, list[str]], prompts: list[str],
           labels: list[int], layers: Sequence[int] | None, progress: Callable[[int], None] | None,
           log: Log) -> ProbeReport:
    n_layers = loaded.num_layers if layers is None else len(layers)
    for line in ["", *report.probe_classes(prompt_set, seed, classes), "",
                 f"Collecting last-prompt-token activations and training probes on {n_layers} layers..."]:
        log(line)
    result = run_probe(loaded, prompts, labels, list(classes), layers, ProbeConfig(seed=seed), progress)
    return ProbeReport(loaded.name, loaded.num_layers, prompt_set, seed, classes, result)


def probe_family(loaded: LoadedModel, prompt_set: str, num_prompts: int = PROBE_PROMPTS, seed: int = 0,
                 layers: Sequence[int] | None = None, progress: Callable[[int], None] | None = None,
                 log: Log = _quiet) -> ProbeReport:
    """Step 1: probe the generated ``prompt_set`` ("symbolic" or "words"), balanced over the 4 operations."""
    samples = probe_samples(prompt_set, num_prompts, seed)
    classes = {c: [s.prompt for s in samples if s.label == c] for c in CLASSES}
    return _probe(loaded, prompt_set, seed, classes, [s.prompt for s in samples], [s.label_index for s in samples],
                  layers, progress, log)


def probe_classes(loaded: LoadedModel, classes: dict[str, list[str]], layers: Sequence[int] | None = None,
                  seed: int = 0, progress: Callable[[int], None] | None = None, log: Log = _quiet) -> ProbeReport:
    """Step 1 on your own prompts: ``classes`` maps each class name to its prompts (at least 2 each)."""
    names = list(classes)
    labels = [names.index(c) for c, ps in classes.items() for _ in ps]
    return _probe(loaded, "custom", seed, dict(classes), [p for ps in classes.values() for p in ps], labels, layers,
                  progress, log)


# ---------------------------------------------------------------- step 2: lens


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
    ids = resolve_targets(loaded.tokenizer, targets, class_tokens)
    tokens, last = prompt_batch(loaded.tokenizer, list(prompts), loaded.context_length)  # length-checked
    r = readout(LogitLens(loaded.model), tokens, last, list(ids.values()), layers, top_k)
    probs, ranks = np.array(r.probs), np.array(r.ranks)
    top_ids, top_probs = np.array(r.top_ids), np.array(r.top_probs)
    decode = loaded.tokenizer.decode
    rows = []
    for b, p in enumerate(prompts):
        per_layer = []
        for li, layer in enumerate(r.layers):
            per_layer.append({
                "layer": layer,
                "targets": {w: {"id": i, "prob": float(probs[li, b, k]), "rank": int(ranks[li, b, k])}
                            for k, (w, i) in enumerate(ids.items())},
                "top": [[decode([int(t)]), float(q)] for t, q in zip(top_ids[li, b], top_probs[li, b])],
            })
        rows.append({"prompt": p, "layers": per_layer})
    summary = {w: {"top_count": int((ranks[-1, :, k] == 0).sum()), "n": len(prompts)} for k, w in enumerate(ids)}
    return LensReport(list(r.layers), ids, rows, summary)


@dataclass
class BaselineLens:
    """Step 2: the base model's logit lens, on the held-out problems (every layer, and the canonical table at
    the classifier layer) and on the 8 canonical prompts (every layer, with the top tokens)."""

    model: str
    num_layers: int
    class_tokens: ClassTokens
    heldout: Evaluation  # the held-out set training evaluates on; greedy answers are not measured here
    canonical: LensReport  # the 8 canonical prompts, class words as targets

    @property
    def classifier_layer(self) -> int:
        return self.heldout.layer

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "num_layers": self.num_layers, "classifier_layer": self.classifier_layer,
                **_token_dicts(self.class_tokens), "heldout": self.heldout.to_dict(),
                "canonical_lens": self.canonical.to_dict()}


def baseline_lens(loaded: LoadedModel, config: TrainConfig | None = None, top_k: int = 5) -> BaselineLens:
    """Step 2 on the held-out set and classifier layer that training with ``config`` would use."""
    cfg = (config or TrainConfig()).for_model(loaded.num_layers)
    tokens = resolve_class_tokens(loaded.tokenizer, target_words(cfg.label_map))
    _, heldout = train_heldout_split(cfg.num_samples, cfg.heldout_samples, cfg.seed)
    ev = _evaluate(loaded, tokens, heldout, cfg.classifier_layer, False, cfg.answer_terminator)
    canonical = run_lens(loaded, [s.prompt for s in CANONICAL], list(CLASSES), None, top_k, class_tokens=tokens)
    return BaselineLens(loaded.name, loaded.num_layers, tokens, ev, canonical)


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
    # per canonical prompt, the tokens as trained (prompt and answer with its terminator): users see what was
    # trained (tokens.trained_tokens)
    canonical_tokens: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ranks: int = 1  # processes that trained it data-parallel (this session; docs/scale.md)

    @property
    def steps_to_readable(self) -> int | None:
        """First snapshot step with full-vocab top-1 >= 0.9 at the classifier layer, on the snapshot set
        (``train.History.steps_to_readable``)."""
        return self.state.history.steps_to_readable(self.classifier_layer)

    def to_dict(self) -> dict[str, Any]:
        hist = self.state.history
        return {
            "model": self.model,
            "num_layers": self.num_layers,
            "classifier_layer": self.classifier_layer,
            **_token_dicts(self.class_tokens),
            "label_map": self.state.config.label_map,
            "class_targets": dict(zip(CLASSES, self.class_tokens.words)),  # class -> the word its lens reads
            "steps_to_readable": self.steps_to_readable,
            "trainable_params": self.trainable_params,
            "config": asdict(self.state.config),
            "history": [{"step": s.step, "total": s.total, "cls_loss": s.cls_loss, "ans_loss": s.ans_loss}
                        for s in hist.steps],
            "snapshots": [asdict(s) for s in hist.snapshots],
            "baseline": self.baseline.summary(),
            "final": self.final.summary(),
            "baseline_lens": self.baseline.lens.to_dict(),
            "final_lens": self.final.lens.to_dict(),
            "checkpoint": self.checkpoint,
            "train_seconds": self.state.seconds,
            "status": self.state.status,
            "stop_reason": self.state.stop_reason,  # "steps", or "readable" (stop_when_readable stopped it early)
            "ranks": self.ranks,
            "canonical": self.canonical_tokens,
            **self.extra,
        }


def resume_state(loaded: LoadedModel, path: str | Path) -> TrainState:
    """Rebuild the TrainState of a saved (e.g. interrupted) run: adapters, Adam state, history, step."""
    from .train import prepare

    record = checkpoint.resumable_record(path)
    state = prepare(loaded, record.train, class_tokens=class_tokens_from_ids(loaded.tokenizer, record.class_tokens))
    check_heldout(record, state.heldout, path)  # the data split too must be the run's own
    checkpoint.restore_into(loaded, path, state)
    return state


def check_heldout(record: RunRecord, heldout: Sequence[Sample], path: str | Path) -> None:
    """Refuse (one sentence) a checkpoint whose held-out set is not the one rebuilt from its settings: its
    numbers would be compared on other problems (SPEC "Evaluation sets": the fingerprint in config.json)."""
    if record.heldout_fingerprint is None:
        raise LazarusError(f"'{path}' has no held-out fingerprint (saved by an earlier lazarus_nb, whose data "
                           "split differs): its held-out set cannot be rebuilt; train it again")
    if record.heldout_fingerprint != heldout_fingerprint(heldout):
        raise LazarusError(f"the held-out set rebuilt for '{path}' differs from the one it was trained with "
                           "(fingerprint mismatch: another lazarus_nb data version?); train it again")


def data_parallel_group() -> mx.distributed.Group | None:
    """The group of a data-parallel run: ``mx.distributed.init()``'s when this process was started by
    ``mlx.launch -n N`` with N > 1, else None (a plain single-process run). The CLI asks for it; the trainer
    never looks for one itself, so a sweep that shards whole runs over the ranks keeps each run single-process."""
    group = mx.distributed.init()
    return group if group.size() > 1 else None


def run_dual_reward(
    loaded: LoadedModel,
    config: TrainConfig,
    output: str | Path | None = None,
    force: bool = False,
    resume: bool = False,
    callback: Callable[[TrainEvent], None] | None = None,
    answers: bool = True,
    log: Log = _quiet,
    group: mx.distributed.Group | None = None,
    baselines: dict[tuple, Evaluation] | None = None,
) -> DualRewardResult:
    """Step 3: baseline evaluation, dual-reward training (checkpointing into ``output``), final evaluation.

    ``output`` None writes nothing. An existing checkpoint there is refused unless ``force`` (start over)
    or ``resume`` (continue it from its last completed step; ``config`` is then ignored: the run keeps its
    saved settings).

    ``group`` (from ``data_parallel_group``): every rank calls this with the same arguments and trains the one
    run data-parallel (``train.train``); every rank evaluates, only rank 0 writes the checkpoint (a resumed run
    reads it on every rank: on several hosts it must be on a shared path).

    ``baselines``: a cache of base-model evaluations, keyed by everything they depend on (class tokens, held-out
    set, layer, answers, terminator). A sweep passes one dict to all its runs, so runs that differ only in what
    training does (cls_weight, rank, learning rate) evaluate the base model once.
    """
    from .lora import disabled
    from .train import prepare, ranks, train

    if resume:
        record = checkpoint.resumable_record(output)
        state = resume_state(loaded, output)
        resumed = (str(output), record.status)
    else:
        if output is not None:
            checkpoint.check_writable(output, force)
        state = prepare(loaded, config)
        resumed = None
    rank, size = ranks(group)
    if group is not None:
        state.config.check_ranks(size)  # before the baseline evaluation, not at the first step
    if rank != 0:
        output = None  # rank 0 writes
    for line in report.training_header(state, loaded.num_layers, resumed, size):
        log(line)
    log("")

    def evaluation() -> Evaluation:
        return _evaluate(loaded, state.class_tokens, state.heldout, state.classifier_layer, answers,
                         state.config.answer_terminator)

    key = (state.class_tokens.ids, heldout_fingerprint(state.heldout), state.classifier_layer, answers,
           state.config.answer_terminator)
    baseline = (baselines or {}).get(key)
    if baseline is None:
        log("Evaluating the base model before training" + (" (incl. greedy answers)..." if answers else "..."))
        # Baseline = the base model. At step 0 the adapters have B = 0, so the adapted model *is* the base
        # model; a resumed run switches its trained adapters off for this evaluation.
        with disabled(loaded.model):
            baseline = evaluation()
        if baselines is not None:
            baselines[key] = baseline
    else:
        log("The base model's evaluation: the same as an earlier run's (same held-out set, layer and class tokens)")
    baseline_results = {"baseline_answer_accuracy": baseline.answer_accuracy}

    def save(st: TrainState) -> None:
        if output is not None:
            checkpoint.save(output, loaded, st, baseline_results)

    train(loaded, state, callback=callback, save=save, group=group)
    final = evaluation()
    if output is not None:
        checkpoint.save(output, loaded, state, {
            **baseline_results,
            "final_accuracy": final.canonical_correct / len(final.canonical),
            "final_heldout_restricted_accuracy": final.heldout_restricted_accuracy,
            "final_heldout_top1_accuracy": final.heldout_top1_accuracy,
            "final_answer_accuracy": final.answer_accuracy,
            "steps_to_readable": state.history.steps_to_readable(state.classifier_layer),
        })
    tokens = [trained_tokens(loaded.tokenizer, s, state.config.answer_terminator) for s in CANONICAL]
    return DualRewardResult(loaded.name, loaded.num_layers, state.classifier_layer, state.class_tokens,
                            state.trainable_params, state, baseline, final,
                            str(output) if output is not None else None, tokens, ranks=size)


# ---------------------------------------------------------------- step 4: verify


def _trained_metrics(ev: Evaluation) -> tuple[float, float, float]:
    """What "the adapter reproduces training" compares: canonical accuracy, held-out top-1 and restricted."""
    return ev.canonical_correct / len(ev.canonical), ev.heldout_top1_accuracy, ev.heldout_restricted_accuracy


def _saved_metrics(record: RunRecord) -> tuple[float, float, float] | None:
    saved = (record.final_accuracy, record.final_heldout_top1_accuracy, record.final_heldout_restricted_accuracy)
    return None if any(v is None for v in saved) else saved  # type: ignore[return-value]


@dataclass
class VerifyResult:
    """Step 4: the lens re-run with the adapter loaded from disk, next to the base model."""

    checkpoint: str
    record: RunRecord
    base: Evaluation
    adapted: Evaluation
    # the adapter from disk gives the trained model's metrics (compared with the in-memory training result,
    # else with the results saved in the checkpoint); None when there is nothing to compare with
    matches_training: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "classifier_layer": self.adapted.layer,
                "base": self.base.to_dict(), "adapted": self.adapted.to_dict(),
                "matches_training": self.matches_training}


def verify(path: str | Path, model: str | None = None, answers: bool = True,
           heldout: Sequence[Sample] | None = None, trained: Evaluation | None = None,
           base: Evaluation | None = None) -> VerifyResult:
    """Step 4: load the base model fresh, evaluate it, load the adapter *from disk*, evaluate again.

    ``trained`` (the in-memory final evaluation of step 3, when there is one) is what the adapter from disk
    must reproduce; without it, the results saved in the checkpoint are (on its own held-out set). ``base``:
    step 3's evaluation of the base model on the same held-out set, which the demo passes rather than
    measuring the same model on the same problems twice."""
    record = checkpoint.read_record(path)
    loaded = load_model(model or record.model)
    tokens = class_tokens_from_ids(loaded.tokenizer, record.class_tokens)
    expected = _trained_metrics(trained) if trained is not None else None
    if heldout is None:
        _, heldout = train_heldout_split(record.train.num_samples, record.train.heldout_samples, record.train.seed)
        check_heldout(record, heldout, path)
        expected = expected or _saved_metrics(record)
    terminator = record.train.answer_terminator
    if base is None:
        base = _evaluate(loaded, tokens, heldout, record.classifier_layer, answers, terminator)
    checkpoint.load_adapter(loaded, path)
    adapted = _evaluate(loaded, tokens, heldout, record.classifier_layer, answers, terminator)
    matches = None if expected is None else all(
        math.isclose(a, b, abs_tol=1e-6) for a, b in zip(_trained_metrics(adapted), expected))
    return VerifyResult(str(path), record, base, adapted, matches)


# ---------------------------------------------------------------- the demo: all four steps


def check_demo_dir(path: str | Path, force: bool = False) -> Path:
    """Refuse (one sentence, before anything runs) a results directory the demo must not write into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LazarusError(f"-o '{path}' is a file; give a directory for the demo results")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise LazarusError(f"-o '{path}' already holds files; use --force to overwrite the demo results there")
    ckpt = path / "checkpoint"
    if ckpt.exists() and not ckpt.is_dir():
        raise LazarusError(f"'{ckpt}' is a file, not a checkpoint directory")
    return path


@dataclass
class DemoResult:
    """The four steps' results and the files the demo wrote (``to_dict()`` is ``demo --json``)."""

    output: Path
    probes: dict[str, ProbeReport]  # prompt family -> step 1
    baseline: BaselineLens  # step 2
    training: DualRewardResult  # step 3
    verified: VerifyResult  # step 4
    files: dict[str, str]  # file name -> path, in the order written
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        b = self.baseline
        return {
            "output": str(self.output), "model": self.training.model, "classifier_layer": b.classifier_layer,
            "files": self.files,
            "probe": {f: {"best_layer": r.result.best_layer, "best_accuracy": r.result.best_accuracy}
                      for f, r in self.probes.items()},
            "baseline_lens": {"layer": b.classifier_layer, "top_count": b.heldout.canonical_correct,
                              "n": len(b.heldout.canonical)},
            "verify": {k: {"canonical_correct": ev.canonical_correct,
                           "heldout_restricted_accuracy": ev.heldout_restricted_accuracy,
                           "heldout_top1_accuracy": ev.heldout_top1_accuracy, "answer_accuracy": ev.answer_accuracy}
                       for k, ev in (("base", self.verified.base), ("adapted", self.verified.adapted))},
            "matches_training": self.verified.matches_training,
        }


def demo_figures(step: str, result: Any, classifier_layer: int) -> dict[str, Figure]:
    """The demo's figures of one step's result, by file name: "probe" (dict of ProbeReport), "train"
    (DualRewardResult), "verify" (VerifyResult). The figures themselves come from :mod:`figures`, the one
    place that turns results into figures for the demo, the notebooks and the widgets."""
    from . import figures

    if step == "probe":
        return {"probe_accuracy.png": figures.probe_figure({f: rep.result for f, rep in result.items()},
                                                            classifier_layer)}
    if step == "train":
        history = result.state.history
        heatmap, curves = figures.emergence_figures(history, classifier_layer)
        return {"emergence_heatmap.png": heatmap, "emergence_curves.png": curves,
                "loss_curves.png": figures.loss_figure(history)}
    if step == "verify":
        return {"lens_before_after.png": figures.lens_before_after_figure(result.base, result.adapted)}
    raise ValueError(f"no demo figures for step '{step}'")


def run_demo(
    out_dir: str | Path,
    model: str = DEFAULT_MODEL,
    config: TrainConfig = DEMO_TRAIN,
    num_prompts: int = DEMO_PROBE_PROMPTS,
    answers: bool = True,
    force: bool = False,
    log: Log = _quiet,
    callback: Callable[[TrainEvent], None] | None = None,
) -> DemoResult:
    """The four steps headless: probes (symbolic and word prompts), baseline lens, dual-reward training with a
    checkpoint in ``out_dir/checkpoint``, verify with the adapter loaded from disk. Writes each step's JSON
    (``probe.json``, ``baseline_lens.json``, ``dual_reward.json``, ``verify.json``) and the figures."""
    from . import plots

    root = check_demo_dir(out_dir, force)
    t_start = time.perf_counter()
    loaded = load(model, log)
    layer = config.for_model(loaded.num_layers).classifier_layer  # any remaining problem: before anything is written
    files: dict[str, str] = {}

    def save(name: str, payload: Any) -> None:
        files[name] = str(report.write_json(root / name, payload))

    def save_figures(step: str, result: Any) -> None:
        for name, fig in demo_figures(step, result, layer).items():
            files[name] = str(plots.save(fig, root / name))

    for line in report.demo_settings(config, num_prompts, answers):
        log(line)
    log("")
    log(f"Step 1/4: baseline linear probes ({num_prompts} prompts per family, every layer)")
    probes = {family: probe_family(loaded, family, num_prompts, config.seed) for family in ("symbolic", "words")}
    for rep in probes.values():
        log(report.probe_family_line(rep, layer))
    save("probe.json", {family: rep.to_dict() for family, rep in probes.items()})
    save_figures("probe", probes)

    log("")
    log(f"Step 2/4: baseline logit lens on the {len(CANONICAL)} canonical prompts (every layer)")
    baseline = baseline_lens(loaded, config)
    for line in report.canonical_lens_table(baseline):
        log(line)
    save("baseline_lens.json", baseline)

    ckpt = root / "checkpoint"
    log("")
    log("Step 3/4: dual-reward training")
    training = run_dual_reward(loaded, config, output=ckpt, force=force, callback=callback, answers=answers, log=log)
    for line in report.training_summary(training):
        log(line)
    save("dual_reward.json", training)
    save_figures("train", training)
    del loaded  # verify loads the base model fresh; two copies need not be in memory

    log("")
    log(f"Step 4/4: verify: the base model again, then the adapter loaded from disk ({ckpt})")
    verified = verify(ckpt, model=model, answers=answers, trained=training.final, base=training.baseline)
    for line in report.verification(verified):
        log(line)
    save("verify.json", verified)
    save_figures("verify", verified)
    files["checkpoint"] = str(ckpt)
    return DemoResult(root, probes, baseline, training, verified, files, time.perf_counter() - t_start)




# ---------------------------------------------------------------- sweeps: a grid of step-3 runs



@dataclass
class SweepResult:
    """What a sweep did and found (``to_dict()`` is ``sweep --json``): the grid's rows, in the grid's order."""

    output: Path
    grid: sweeps.Grid
    rows: list[dict[str, Any]]  # the rows of the grid's runs in sweep.jsonl (all of them once every rank is done)
    ran: list[str]  # the runs whose rows this process wrote (trained, resumed, or a diverged checkpoint recorded)
    skipped: list[str]  # this process's runs that already had a row
    files: dict[str, str]  # file name -> path
    rank: int
    size: int  # ranks (processes) that shared the grid
    seconds: float

    @property
    def missing(self) -> list[str]:
        """The grid's runs without a row (after an error on another rank, say)."""
        done = {r["run"] for r in self.rows}
        return [run.name for run in self.grid.runs() if run.name not in done]

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "grid": {k: list(v) for k, v in self.grid.axes.items()},
                "runs": [run.name for run in self.grid.runs()], "rows": self.rows, "missing": self.missing,
                "ran": self.ran, "skipped": self.skipped, "files": self.files, "ranks": self.size,
                "seconds": self.seconds}


def _sweep_run(loaded: LoadedModel, root: Path, planned: sweeps.Planned, answers: bool,
               callback: Callable[[TrainEvent], None] | None, log: Log,
               baselines: dict[tuple, Evaluation]) -> dict[str, Any]:
    """One run of a sweep from the base model, checkpointed in ``root/<run name>``; its row."""
    from .lora import remove_adapters

    path = root / planned.run.name
    remove_adapters(loaded.model)  # the previous run's (or the caller's) adapters: every run starts from the base
    t0 = time.perf_counter()
    result = None
    if planned.action != sweeps.DIVERGED:  # a diverged checkpoint would diverge again: record it as it is
        try:
            result = run_dual_reward(loaded, planned.run.config, output=path, resume=planned.action == sweeps.RESUME,
                                     callback=callback, answers=answers, log=log, baselines=baselines).to_dict()
        except LazarusError:
            if not (checkpoint.is_checkpoint(path) and checkpoint.read_record(path).status == "diverged"):
                raise
            # diverged: a result of the grid (say, a learning rate too high), not a reason to stop the sweep
    return sweeps.make_row(planned.run, checkpoint.read_record(path).to_dict(), result, time.perf_counter() - t0)


def _wait_for_ranks(group: Any) -> None:
    """Every rank reaches the end of its runs before rank 0 reads all rows (an all-sum of one number)."""
    try:
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))
    except RuntimeError as exc:  # a peer exited (its error is on its own stderr)
        raise LazarusError(f"another rank of the sweep stopped before finishing its runs ({exc}); the rows "
                           "written so far are kept: run the sweep again to finish it") from None


def sweep(
    out_dir: str | Path,
    grid: sweeps.Grid | Mapping[str, Sequence[Any]],
    base: TrainConfig | None = None,
    model: str | LoadedModel = DEFAULT_MODEL,
    answers: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    callback_for: Callable[[sweeps.Planned], Callable[[TrainEvent], None] | None] | None = None,
    log: Log = _quiet,
    group: Any = None,
) -> SweepResult:
    """A grid of step-3 runs: ``grid`` maps fields of ``sweeps.GRID_FIELDS`` to value lists over ``base`` (or is
    a ``sweeps.Grid``). Each run is a normal ``run_dual_reward`` checkpointed in ``out_dir/<run name>``; its row
    is appended to ``out_dir/sweep.jsonl`` and passed to ``on_row`` as the run finishes (a notebook's table and
    figure fill in live). Runs with a row are skipped and an interrupted run resumes (see :mod:`lazarus_nb.sweep`),
    so calling this again continues a sweep; every setting is checked before anything trains.

    The model loads once (``model``: a name, or a LoadedModel to reuse). Each run starts from the base model:
    the previous run's adapters are removed (``lora.remove_adapters``: exact, and milliseconds where a reload
    takes seconds), and the model is left without adapters at the end.

    Ranks: under ``mlx.launch -n N`` (``group``, default ``mx.distributed.init()``: one process outside
    mlx.launch) rank r runs the grid's runs r, r + N, ...; every run is single-process, so its row is the row the
    sequential sweep writes. The ranks wait for each other at the end, then rank 0 writes the figures
    (``trade_off.png``, ``steps_to_readable.png``) and every rank returns all rows.
    ``callback_for(planned)`` gives each trained run its training callback (the CLI's step table)."""
    from . import figures, plots
    from .lora import remove_adapters
    from .models import peek_config

    t_start = time.perf_counter()
    grid = grid if isinstance(grid, sweeps.Grid) else sweeps.Grid.of(grid, base)
    group = group if group is not None else mx.distributed.init()
    rank, size = group.rank(), group.size()
    loaded = model if isinstance(model, LoadedModel) else load(model, log)
    grid.check(loaded.num_layers)
    planned = sweeps.plan(out_dir, grid, loaded.num_layers, peek_config(loaded.name))
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    mine = sweeps.shard(planned, rank, size)
    for line in report.sweep_plan(grid, root, planned, mine, rank, size):
        log(line)
    ran: list[str] = []
    baselines: dict[tuple, Evaluation] = {}  # the base model's evaluations, shared by the runs they fit
    try:
        for p in mine:
            if p.action == sweeps.DONE:
                continue
            log(report.sweep_run_start(p, len(planned), rank, size))
            row = _sweep_run(loaded, root, p, answers, callback_for(p) if callback_for else None, log, baselines)
            sweeps.append_row(root, row)
            ran.append(p.run.name)
            log(report.sweep_row_line(row, rank, size))
            if on_row is not None:
                on_row(row)
    finally:
        remove_adapters(loaded.model)
    if size > 1:
        _wait_for_ranks(group)
    rows = sweeps.grid_rows(grid, sweeps.read_rows(root))
    files = {sweeps.ROWS: str(sweeps.rows_path(root))}
    if rank == 0:
        for name, fig in figures.sweep_figures(rows).items():
            files[name] = str(plots.save(fig, root / name))
    skipped = [p.run.name for p in mine if p.action == sweeps.DONE]
    return SweepResult(root, grid, rows, ran, skipped, files, rank, size, time.perf_counter() - t_start)


__all__ = ["BaselineLens", "DemoResult", "DualRewardResult", "LensReport", "ProbeReport", "SweepResult",
           "VerifyResult", "baseline_lens", "check_demo_dir", "data_parallel_group", "demo_figures",
           "last_token_hidden", "load", "probe_classes", "probe_family", "probe_samples", "resume_state", "run_demo",
           "run_dual_reward", "run_lens", "run_probe", "sweep", "verify"]
