"""The four steps and the demo: baseline probe, baseline lens, dual-reward training, verify, and
``run_demo`` (all four, writing JSON results and figures).

The CLI, the notebooks and the widgets call these, so a result in a notebook is the result the CLI prints.
Each step returns a dataclass whose ``to_dict()`` is that step's JSON: what the CLI prints with ``--json``
and what the demo and the notebooks write, whoever calls it. The long steps take a ``log`` (called with one
line of text at a time, from :mod:`lazarus_nb.show.text`), so a notebook can show the CLI's progress text.

mlx-lm (via ``train`` and ``lora``) is imported inside the functions that train, so importing this module
stays cheap and the CLI can run the checks here before it loads anything heavy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mlx.core as mx
import numpy as np

from lazarus_nb.data.labels import LabelMap, target_words
from lazarus_nb.data.prompts import (
    CANONICAL,
    CLASSES,
    PROBE_PROMPTS,
    Sample,
    heldout_fingerprint,
    probe_samples,
    word_forms,
)
from lazarus_nb.data.tokens import (
    ClassTokens,
    class_tokens_from_ids,
    prompt_batch,
    resolve_class_tokens,
    resolve_targets,
    trained_tokens,
)
from lazarus_nb.errors import LazarusError
from lazarus_nb.measure.evaluate import Evaluation, evaluate, last_token_hidden
from lazarus_nb.measure.probe import ProbeConfig, ProbeResult, probe_layers
from lazarus_nb.model.lens import LogitLens, readout
from lazarus_nb.model.load import LoadedModel, load_model
from lazarus_nb.results.lens import BaselineLens, LayerRead, LensReport, PromptRead, TargetRead
from lazarus_nb.results.probe import ProbeReport
from lazarus_nb.results.training import DualRewardResult
from lazarus_nb.results.verify import TrainedMetrics, VerifyResult
from lazarus_nb.run.request import TrainRequest, train_request
from lazarus_nb.show import text as report
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.record import RunRecord

if TYPE_CHECKING:

    from lazarus_nb.train.callbacks import TrainingCallback
    from lazarus_nb.train.loop import Trainer
    from lazarus_nb.train.state import TrainState


Log = Callable[[str], None]


def quiet(line: str) -> None:
    """The default ``log``: steps run silently unless the caller wants the text."""


def load(model: str, log: Log = quiet) -> LoadedModel:
    """``models.load_model`` with the CLI's two lines about what was loaded."""
    log(f"Loading model: {model}")
    t0 = time.perf_counter()
    loaded = load_model(model)
    log(report.model_loaded(loaded, time.perf_counter() - t0))
    return loaded


def evaluate_model(loaded: LoadedModel, tokens: ClassTokens, heldout: Sequence[Sample], layer: int, answers: bool,
                   terminator: str, labels: LabelMap | None = None) -> Evaluation:
    """``evaluate`` of the model as it is now, with every control: the canonical prompts, the held-out set and
    the same problems as word prompts (cross-format transfer); with ``answers``, the answer half: greedy answers,
    answer NLL and collateral damage on the general text. ``heldout`` carries its lens targets already
    (``TrainConfig.split``); ``labels`` (default: the true map) gives the canonical prompts theirs."""
    canonical = (labels or LabelMap()).apply(CANONICAL)
    return evaluate(LogitLens(loaded.model), loaded.tokenizer, tokens, heldout, canonical, layer, answers, terminator,
                    words=word_forms(heldout), general=answers, context_length=loaded.context_length)


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
                 log: Log = quiet) -> ProbeReport:
    """Step 1: probe the generated ``prompt_set`` ("symbolic" or "words"), balanced over the 4 operations."""
    samples = probe_samples(prompt_set, num_prompts, seed)
    classes = {c: [s.prompt for s in samples if s.label == c] for c in CLASSES}
    return _probe(loaded, prompt_set, seed, classes, [s.prompt for s in samples], [s.label_index for s in samples],
                  layers, progress, log)


def probe_classes(loaded: LoadedModel, classes: dict[str, list[str]], layers: Sequence[int] | None = None,
                  seed: int = 0, progress: Callable[[int], None] | None = None, log: Log = quiet) -> ProbeReport:
    """Step 1 on your own prompts: ``classes`` maps each class name to its prompts (at least 2 each)."""
    names = list(classes)
    labels = [names.index(c) for c, ps in classes.items() for _ in ps]
    return _probe(loaded, "custom", seed, dict(classes), [p for ps in classes.values() for p in ps], labels, layers,
                  progress, log)


def run_lens(
    loaded: LoadedModel,
    prompts: Sequence[str],
    targets: Sequence[str],
    layers: Sequence[int] | None = None,
    top_k: int = 5,
    class_tokens: ClassTokens | None = None,
) -> LensReport:
    """Read the lens at each prompt's last token, for every layer in ``layers`` (default all).

    ``class_tokens`` (a checkpoint's): targets that are its class words use exactly its ids (docs/science.md "Class
    tokens"); other targets are resolved from the tokenizer."""
    if not targets:
        raise LazarusError("give at least one target word")
    ids = resolve_targets(loaded.tokenizer, targets, class_tokens)
    tokens, last = prompt_batch(loaded.tokenizer, list(prompts), loaded.context_length)  # length-checked
    r = readout(LogitLens(loaded.model), tokens, last, list(ids.values()), layers, top_k)
    probs, ranks = np.array(r.probs), np.array(r.ranks)
    top_ids, top_probs = np.array(r.top_ids), np.array(r.top_probs)
    decode = loaded.tokenizer.decode

    def read(li: int, b: int) -> LayerRead:
        """Layer ``r.layers[li]`` of prompt ``b``."""
        targets = {w: TargetRead(i, float(probs[li, b, k]), int(ranks[li, b, k]))
                   for k, (w, i) in enumerate(ids.items())}
        top = [(decode([int(t)]), float(q)) for t, q in zip(top_ids[li, b], top_probs[li, b])]
        return LayerRead(r.layers[li], targets, top)

    rows = [PromptRead(p, [read(li, b) for li in range(len(r.layers))]) for b, p in enumerate(prompts)]
    summary = {w: {"top_count": int((ranks[-1, :, k] == 0).sum()), "n": len(prompts)} for k, w in enumerate(ids)}
    return LensReport(list(r.layers), ids, rows, summary)


def baseline_lens(loaded: LoadedModel, config: TrainConfig | None = None, top_k: int = 5) -> BaselineLens:
    """Step 2 on the held-out set and classifier layer that training with ``config`` would use."""
    cfg = (config or TrainConfig()).for_model(loaded.num_layers)
    tokens = resolve_class_tokens(loaded.tokenizer, target_words(cfg.label_map))
    _, heldout = cfg.split()
    ev = evaluate_model(loaded, tokens, heldout, cfg.classifier_layer, False, cfg.answer_terminator, cfg.labels)
    canonical = run_lens(loaded, [s.prompt for s in CANONICAL], list(CLASSES), None, top_k, class_tokens=tokens)
    return BaselineLens(loaded.name, loaded.num_layers, tokens, ev, canonical)


def resume_state(loaded: LoadedModel, path: str | Path, record: RunRecord | None = None) -> TrainState:
    """Rebuild the TrainState of a saved (e.g. interrupted) run: adapters, Adam state, history, step. ``record``:
    its run record when the caller has read it already (None: read here)."""
    from lazarus_nb.train.loop import prepare  # mlx-lm loads only when a run resumes (see the module doc)

    record = record or checkpoint.resumable_record(path)
    state = prepare(loaded, record.train, class_tokens=class_tokens_from_ids(loaded.tokenizer, record.class_tokens))
    check_heldout(record, state.heldout, path)  # the data split too must be the run's own
    checkpoint.restore_into(loaded, path, state, record)
    return state


def check_heldout(record: RunRecord, heldout: Sequence[Sample], path: str | Path) -> None:
    """Refuse (one sentence) a checkpoint whose held-out set is not the one rebuilt from its settings: its
    numbers would be compared on other problems (docs/science.md "Evaluation sets": the fingerprint in config.json)."""
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
    config: TrainConfig | TrainRequest,
    output: str | Path | None = None,
    force: bool = False,
    resume: bool = False,
    callback: TrainingCallback | None = None,
    answers: bool = True,
    log: Log = quiet,
    group: mx.distributed.Group | None = None,
    baselines: dict[tuple, Evaluation] | None = None,
    trainer: Trainer | None = None,
) -> DualRewardResult:
    """Step 3: baseline evaluation, dual-reward training (checkpointing into ``output``), final evaluation.

    ``output`` None writes nothing. An existing checkpoint there is refused unless ``force`` (start over)
    or ``resume`` (continue it from its last completed step; ``config`` is then ignored: the run keeps its
    saved settings). ``config`` may be a :class:`~lazarus_nb.run.request.TrainRequest` instead, checked already
    (the CLI's): ``output``, ``force`` and ``resume`` are then its own, and nothing is checked or read again.

    ``group`` (from ``data_parallel_group``): every rank calls this with the same arguments and trains the one
    run data-parallel (``train.train``); every rank evaluates, only rank 0 writes the checkpoint (a resumed run
    reads it on every rank: on several hosts it must be on a shared path).

    ``baselines``: a cache of base-model evaluations, keyed by everything they depend on (class tokens, held-out
    set, layer, answers, terminator). A sweep passes one dict to all its runs, so runs that differ only in what
    training does (cls_weight, rank, learning rate) evaluate the base model once.

    ``callback``: hears of every step and snapshot (``train.callbacks``). ``trainer``: what the run computes
    with (``train.Trainer``: its loss, batches and snapshot), the dual-reward run's by default.
    """
    from lazarus_nb.model.lora import disabled  # mlx-lm loads only when a run trains (see the module doc)
    from lazarus_nb.train.loop import Trainer, prepare, ranks  # mlx-lm too, through lora

    rank, size = ranks(group)
    if isinstance(config, TrainRequest):
        request = config
    else:
        request = train_request(config, output, force, checkpoint.resumable_record(output) if resume else None,
                                loaded.num_layers, ranks=size)
    output = request.output
    if request.record is not None:
        state = resume_state(loaded, output, request.record)
        resumed = (str(output), request.record.status)
    else:
        state = prepare(loaded, request.config)
        resumed = None
    if rank != 0:
        output = None  # rank 0 writes
    for line in report.training_header(state, loaded.num_layers, resumed, size):
        log(line)
    log("")

    def evaluation() -> Evaluation:
        return evaluate_model(loaded, state.class_tokens, state.heldout, state.classifier_layer, answers,
                              state.config.answer_terminator, state.config.labels)

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

    (trainer or Trainer()).train(loaded, state, callback=callback, save=save, group=group)
    final = evaluation()
    if output is not None:
        checkpoint.save(output, loaded, state, {
            **baseline_results,
            **TrainedMetrics.of(final).record_values(),
            "final_answer_accuracy": final.answer_accuracy,
            "steps_to_readable": state.history.steps_to_readable(state.classifier_layer),
            "steps_to_readable_train": state.history.steps_to_readable(state.classifier_layer, on="train"),
        })
    tokens = [trained_tokens(loaded.tokenizer, s, state.config.answer_terminator) for s in CANONICAL]
    return DualRewardResult(loaded.name, loaded.num_layers, state.classifier_layer, state.class_tokens,
                            state.trainable_params, state, baseline, final,
                            str(output) if output is not None else None, tokens, ranks=size)


def verify(path: str | Path, model: str | None = None, answers: bool = True,
           heldout: Sequence[Sample] | None = None, trained: Evaluation | None = None,
           base: Evaluation | None = None, log: Log = quiet) -> VerifyResult:
    """Step 4: load the base model fresh, evaluate it, load the adapter *from disk*, evaluate again.

    ``trained`` (the in-memory final evaluation of step 3, when there is one) is what the adapter from disk
    must reproduce; without it, the results saved in the checkpoint are (on its own held-out set). ``base``:
    step 3's evaluation of the base model on the same held-out set, which the demo passes rather than
    measuring the same model on the same problems twice. ``log`` hears each stage as it starts."""
    record = checkpoint.read_record(path)
    loaded = load(model or record.model, log)
    tokens = class_tokens_from_ids(loaded.tokenizer, record.class_tokens)
    expected = TrainedMetrics.of(trained) if trained is not None else None
    if heldout is None:
        _, heldout = record.train.split()
        check_heldout(record, heldout, path)
        expected = expected or TrainedMetrics.saved(record)
    terminator = record.train.answer_terminator
    if base is None:
        log("evaluating the base model...")
        base = evaluate_model(loaded, tokens, heldout, record.classifier_layer, answers, terminator,
                              record.train.labels)
    log(f"loading the adapter from disk ({path})...")
    checkpoint.load_adapter(loaded, path, record)
    log("evaluating the adapter...")
    adapted = evaluate_model(loaded, tokens, heldout, record.classifier_layer, answers, terminator,
                             record.train.labels)
    matches = None if expected is None else TrainedMetrics.of(adapted).matches(expected)
    return VerifyResult(str(path), record, base, adapted, matches)
