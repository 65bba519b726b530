"""Steering as a workflow step (docs/science.md "Steering"): does adding the difference of two operations' mean states
move the answer, and the lens's class, from one operation to the other? For each ordered pair (op B -> op A), op-B
held-out prompts get alpha * (mean h_l[op A] - mean h_l[op B]) at layer l (means over the run's training prompts),
for the base model (adapters off) and, given an adapter, the adapted one.

mlx-lm (via ``model.lora``) is imported inside :func:`steering`, so importing this module stays cheap and the CLI
can check a request before it loads anything heavy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from lazarus_nb.data.labels import target_words
from lazarus_nb.data.prompts import CLASSES, distinct
from lazarus_nb.data.tokens import class_tokens_from_ids, resolve_class_tokens
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.measure.steering import POSITIONS, class_means, steer, valid_pairs
from lazarus_nb.model.layers import check_layers
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.results.steering import PairSteering, SteerCurve, SteeringResult
from lazarus_nb.run.steps import Log, check_heldout, quiet
from lazarus_nb.show import causal_text
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig

ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.linspace(-4, 4, 9))
"""-4, -3, ..., 4 in units of the mean difference: 0 is the unsteered model, 1 moves the op-B mean onto op A's."""


DEFAULT_PAIR = ("add", "multiply")
"""(from_op, to_op) by default: add prompts steered toward multiply, both valid for every add problem."""


def pairs_of(from_op: str | None, to_op: str | None, all_pairs: bool = False) -> list[tuple[str, str]]:
    """The ordered (from_op, to_op) pairs asked for: every ordered pair of different operations with ``all_pairs``,
    else the one given (each defaulting to ``DEFAULT_PAIR``'s); one sentence (SettingError) for an unknown operation
    or the same one twice."""
    if all_pairs:
        if from_op is not None or to_op is not None:
            raise SettingError("all_pairs", "{field} steers every ordered pair; give it without --from-op/--to-op")
        return [(b, a) for b in CLASSES for a in CLASSES if a != b]
    from_op, to_op = from_op or DEFAULT_PAIR[0], to_op or DEFAULT_PAIR[1]
    for field, op in (("from_op", from_op), ("to_op", to_op)):
        if op not in CLASSES:
            raise SettingError(field, f"{{field}} must be an operation, one of {', '.join(CLASSES)}, got {op!r}")
    if from_op == to_op:
        raise SettingError(("from_op", "to_op"), f"{{field}} must be two different operations, got {from_op} twice")
    return [(from_op, to_op)]


def check_steering(alphas: Sequence[float], positions: str) -> None:
    """One sentence (SettingError) for no alpha, a non-finite alpha, or unknown positions."""
    if not alphas:
        raise SettingError("alphas", "{field} must give at least one value")
    bad = [a for a in alphas if not math.isfinite(a)]
    if bad:
        raise SettingError("alphas", f"{{field}} must be finite numbers, got {bad[0]}")
    if positions not in POSITIONS:
        raise SettingError("positions", f"{{field}} must be one of {', '.join(POSITIONS)}, got {positions!r}")


def steering(
    loaded: LoadedModel,
    adapter: str | Path | None = None,
    pairs: Sequence[tuple[str, str]] = (DEFAULT_PAIR,),
    layer: int | None = None,
    alphas: Sequence[float] = ALPHAS,
    positions: str = "last",
    config: TrainConfig | None = None,
    log: Log = quiet,
) -> SteeringResult:
    """Steer op-B held-out prompts toward op A for each (op B, op A) of ``pairs`` (``pairs_of``), at ``layer``
    (default: the classifier layer), for each alpha of ``alphas``, adding the vector at ``positions`` (``"last"``
    prompt token or every ``"prompt"`` token). With ``adapter`` (a checkpoint, loaded onto ``loaded`` here, which
    keeps it) the data, class tokens and classifier layer are its run's and both the base and the adapted model are
    steered; without, the base model on the split and layer of ``config`` (default: the default run's).

    A pair none of whose held-out op-B problems is also a valid op-A problem is skipped (with a line to ``log``).
    Refused in one sentence: unknown or equal operations, a non-finite alpha, a layer outside the model, a model that
    already carries adapters, no pair left to steer."""
    from lazarus_nb.model.lora import adapters, disabled  # mlx-lm loads only when steering runs (see the module doc)

    started = time.perf_counter()
    check_steering(alphas, positions)
    for from_op, to_op in pairs:
        pairs_of(from_op, to_op)
    if adapters(loaded.model):
        raise LazarusError("this model already carries adapters; load a fresh one: steering loads the adapter itself")
    if adapter is not None:
        record = checkpoint.read_record(adapter)
        cfg = record.train
        train_set, heldout = cfg.split()
        check_heldout(record, heldout, adapter)
    else:
        cfg = (config or TrainConfig()).for_model(loaded.num_layers)
        train_set, heldout = cfg.split()
    lens_layer = cfg.classifier_layer
    layer = lens_layer if layer is None else layer
    check_layers([layer], loaded.num_layers, "layer")
    chosen = {(op, to): valid_pairs([s for s in heldout if s.label == op], to) for op, to in pairs}
    empty = [pair for pair in pairs if not chosen[pair]]
    pairs = [pair for pair in pairs if chosen[pair]]
    if not pairs:
        raise LazarusError(f"no held-out {empty[0][0]} problem has operands that also make a valid {empty[0][1]} "
                           "problem; choose another pair")
    for from_op, to_op in empty:
        log(causal_text.skipped_pair_line(from_op, to_op))
    if adapter is not None:
        checkpoint.load_adapter(loaded, adapter, record)
        tokens = class_tokens_from_ids(loaded.tokenizer, record.class_tokens)
    else:
        tokens = resolve_class_tokens(loaded.tokenizer, target_words(cfg.label_map))
    lens = LogitLens(loaded.model)
    ops = sorted({op for pair in pairs for op in pair}, key=CLASSES.index)
    problems = distinct(train_set)
    counts = {op: sum(s.label == op for s in problems) for op in ops}
    for line in causal_text.steering_settings(loaded.name, layer, lens_layer, positions, alphas, pairs, counts):
        log(line)

    curves: dict[tuple[str, str], list[SteerCurve]] = {pair: [] for pair in pairs}
    labels = ["base", "adapted"] if adapter is not None else ["base"]
    model_seconds: dict[str, float] = {}
    for label in labels:
        with disabled(loaded.model) if label == "base" else nullcontext():
            t0 = time.perf_counter()
            means = class_means(loaded, problems, layer, ops)
            for from_op, to_op in pairs:
                vector = means[to_op] - means[from_op]
                points = steer(lens, loaded.tokenizer, chosen[(from_op, to_op)], vector, layer, lens_layer, alphas,
                               tokens, CLASSES.index(to_op), cfg.answer_terminator, positions)
                curves[(from_op, to_op)].append(SteerCurve(label, points, float(np.linalg.norm(vector)),
                                                           float(np.linalg.norm(means[from_op]))))
                log(causal_text.steer_line(label, from_op, to_op, curves[(from_op, to_op)][-1]))
            model_seconds[label] = time.perf_counter() - t0
            log(causal_text.model_done_line(label, model_seconds[label]))
    result_pairs = [PairSteering(b, a, [s.prompt for s, _ in chosen[(b, a)]], curves[(b, a)]) for b, a in pairs]
    return SteeringResult(loaded.name, str(adapter) if adapter is not None else None, loaded.num_layers, layer,
                          lens_layer, positions, [float(a) for a in alphas], cfg.label_map, tokens, counts,
                          result_pairs, time.perf_counter() - started, model_seconds)
