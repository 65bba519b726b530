"""Dual-reward LoRA training with per-step logit-lens snapshots (docs/science.md "Dual-reward training").

The trainer knows nothing about UI or files: a ``callbacks.TrainingCallback`` sees every step and snapshot
(progress bars, live plots), and a ``save`` hook is called at checkpoint intervals, on Ctrl-C and on divergence,
always with the state of the last *completed* step (see ``checkpoint.py``). What a run computes with (its loss,
its batches, its lens snapshot) are the fields of a ``Trainer``, as mlx-lm's ``train`` takes ``loss`` and
``iterate_batches``; ``train`` runs the default one.

Data-parallel: given an ``mx.distributed`` group (``mlx.launch -n N``), ``train`` runs one run on N processes:
each rank takes its share of every global batch of the single-process schedule and ``make_step`` combines the
ranks' losses and gradients (docs/scale.md). Without a group it is the same step with N = 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.nn.utils import average_gradients

from lazarus_nb.data.labels import target_words
from lazarus_nb.data.prompts import (
    CANONICAL,
    CLASSES,
    Sample,
    balanced_batches,
    balanced_subset,
    distinct,
)
from lazarus_nb.data.tokens import Batch, ClassTokens, encode_example, make_batch, resolve_class_tokens
from lazarus_nb.errors import LazarusError
from lazarus_nb.measure.evaluate import sets_lens_stats
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.model.lora import LoraConfig, adapters, apply_lora, trainable_count
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.history import History, Snapshot, StepLog
from lazarus_nb.train.state import TrainState

Loss = Callable[[LogitLens, Batch, int, float, mx.array | None], tuple[mx.array, mx.array, mx.array]]
"""``(lens, batch, classifier_layer, cls_weight, counts) -> (total, classification, answer)``, as
``losses.dual_loss``: what the step differentiates."""
Batches = Callable[[Any, TrainState, mx.distributed.Group | None], Iterable[Batch]]
"""``(tokenizer, state, group) -> batches``: the batch of every step still to run (from ``state.step`` on), this
rank's share of each, as ``scheduled_batches``."""
Snapshotter = Callable[[LogitLens, LoadedModel, TrainState], Snapshot]
"""``(lens, loaded, state) -> Snapshot``: the logit lens at ``state.step``, as ``snapshot``."""


def snapshot_due(step: int, steps: int, every: int) -> bool:
    """Whether training records a lens snapshot after ``step`` of ``steps`` (0 = the base model): at the first
    and last step, and every ``every`` steps (0 = first and last only). The one schedule rule: the trainer
    and the live panel both ask it. ``steps`` is the configured count: a run that ``stop_when_readable`` ends
    early stops right after a due snapshot, so its last step has one too and the history still ends at a
    snapshot."""
    return step in (0, steps) or (every > 0 and step % every == 0)


def prepare(loaded: LoadedModel, config: TrainConfig, class_tokens: ClassTokens | None = None) -> TrainState:
    """Resolve the config, build data, class tokens, adapters and optimizer: the state at step 0."""
    cfg = config.for_model(loaded.num_layers)
    class_tokens = class_tokens or resolve_class_tokens(loaded.tokenizer, target_words(cfg.label_map))
    try:
        train_set, heldout = cfg.split()
    except ValueError as exc:
        raise LazarusError(str(exc)) from None
    if adapters(loaded.model):
        raise LazarusError("this model already carries adapters; load a fresh model to train new ones")
    # A tokenizer that cannot encode an example (docs/science.md "Tokenising an example") fails here, not at step 1.
    for s in CANONICAL:
        encode_example(loaded.tokenizer, s.prompt, s.answer, cfg.answer_terminator)
    mx.random.seed(cfg.seed)  # LoRA A init
    adapted = apply_lora(loaded.model, LoraConfig(rank=cfg.lora_rank, scale=cfg.lora_scale, layers=cfg.lora_layers))
    optimizer = optim.Adam(learning_rate=cfg.learning_rate, bias_correction=cfg.adam_bias_correction)
    optimizer.init(loaded.model.trainable_parameters())
    return TrainState(cfg, class_tokens, cfg.classifier_layer, adapted, trainable_count(loaded.model), 0,
                      History(list(range(loaded.num_layers))), optimizer, train_set, heldout, 0.0)


def token_lengths(tokenizer: Any, samples: Sequence[Sample], terminator: str) -> list[int]:
    """Tokens per training example (prompt + answer + terminator): the key length bucketing sorts by."""
    return [sum(map(len, encode_example(tokenizer, s.prompt, s.answer, terminator))) for s in samples]


def schedule(tokenizer: Any, state: TrainState) -> list[np.ndarray]:
    """The sample indices of every step of ``state``'s run (``batch_plan``). Computed once per run; the benchmark
    calls it too, so its "step 1" is the trainer's step 1."""
    return batch_plan(tokenizer, state.train_set, state.config)


def batch_plan(tokenizer: Any, train_set: Sequence[Sample], config: TrainConfig) -> list[np.ndarray]:
    """The sample indices of every step of a run with ``config`` on ``train_set``: class-balanced, length-bucketed
    batches (``data.balanced_batches``) over the real token lengths. The reader baseline reads the same plan."""
    lengths = token_lengths(tokenizer, train_set, config.answer_terminator)
    return balanced_batches([s.label for s in train_set], lengths, config.batch_size, config.steps, config.seed)


def batch_for(tokenizer: Any, state: TrainState, indices: Sequence[int]) -> Batch:
    """The training batch of the samples at ``indices`` (one entry of ``schedule``)."""
    return make_batch(tokenizer, [state.train_set[i] for i in indices], state.class_tokens,
                      terminator=state.config.answer_terminator)


def scheduled_batches(tokenizer: Any, state: TrainState, group: mx.distributed.Group | None = None) -> Iterable[Batch]:
    """The default ``Batches``: the batch of every step of ``schedule`` from ``state.step`` on (a resumed run
    continues where it stopped), this rank's share of each (``rank_share``). The schedule is computed here, once;
    each batch is built when the trainer asks for it."""
    plan = schedule(tokenizer, state)
    return (batch_for(tokenizer, state, rank_share(indices, group)) for indices in plan[state.step:])


class Losses(NamedTuple):
    total: float
    cls_loss: float
    ans_loss: float


class Diverged(LazarusError):
    """A step saw a non-finite loss; it raised before applying the update, so the adapters are unchanged."""

    def __init__(self, loss: float) -> None:
        super().__init__(f"training diverged (loss {loss}); the adapters were not updated")
        self.loss = loss


def dual_loss_and_grad(model: nn.Module, classifier_layer: int, cls_weight: float, loss: Loss = dual_loss) -> Callable:
    """``(batch, counts=None) -> ((total, cls, ans), grads)``: the dual loss (``loss``, by default
    ``losses.dual_loss``; ``counts`` its divisors) and its gradient w.r.t. the trainable parameters (the adapters)."""
    lens = LogitLens(model)
    return nn.value_and_grad(
        model, lambda batch, counts=None: loss(lens, batch, classifier_layer, cls_weight, counts))


def ranks(group: mx.distributed.Group | None) -> tuple[int, int]:
    """(this process's rank, number of ranks) of a data-parallel ``group``; (0, 1) without one."""
    return (0, 1) if group is None else (group.rank(), group.size())


def rank_share(indices: Sequence[int], group: mx.distributed.Group | None) -> Sequence[int]:
    """This rank's share of a global batch: every N-th sample from its rank on, as mlx-lm's ``iterate_batches``
    splits a batch (``TrainConfig.check_ranks`` makes the shares equal)."""
    rank, size = ranks(group)
    return indices[rank::size]


def make_step(
    model: nn.Module, optimizer: optim.Optimizer, classifier_layer: int, cls_weight: float, compile: bool = False,
    group: mx.distributed.Group | None = None, loss: Loss = dual_loss,
) -> Callable[[Batch], Losses]:
    """One optimiser step, ``step(batch) -> Losses``: loss and gradient, the finiteness check *before* the
    update (a non-finite loss raises ``Diverged`` and leaves the adapters as they were), the Adam update.

    ``group`` (data-parallel, N ranks): ``batch`` is this rank's share of the global batch. The example and
    answer-token counts are summed over the ranks first, and each rank divides its summed losses by 1/N of the
    global counts, so the ranks' losses and gradients *average* (``mlx.nn.average_gradients``, as mlx-lm's
    trainer does) to exactly the loss and gradient of the global batch; every rank then applies the same update.
    The returned losses are the global batch's on every rank, so all ranks raise ``Diverged`` together.
    Without a group this is the same step with N = 1 (the counts are the batch's own: the means).

    ``compile=True``: the loss-and-grad and the update run under ``mx.compile``, as in mlx-lm's trainer.
    Same losses, faster per step once compiled (docs/performance.md); ``train`` uses it when
    ``TrainConfig.compiles`` says so. ``loss``: what is differentiated, ``losses.dual_loss`` unless a
    ``Trainer`` says otherwise."""
    value_and_grad = dual_loss_and_grad(model, classifier_layer, cls_weight, loss)
    batch_fields = [f.name for f in fields(Batch)]
    size = ranks(group)[1]

    def loss_and_grad(counts: mx.array, *arrays: mx.array) -> Any:  # arrays, not a Batch: what mx.compile traces
        return value_and_grad(Batch(*arrays), counts)

    def global_counts(batch: Batch) -> mx.array:
        """Each rank's divisors: 1/N of the global batch's examples and answer tokens (at least 1 token)."""
        counts = mx.array([batch.size, batch.answer_targets.size], dtype=mx.float32)
        if group is not None:
            counts = mx.distributed.all_sum(counts, group=group)
        return mx.maximum(counts, 1.0) / size

    def update(grads: Any) -> None:
        optimizer.update(model, grads)

    if compile:
        # The model's and the optimiser's arrays are implicit inputs (each call sees the updated adapters)
        # and outputs (value_and_grad and the update write into them), as in mlx-lm's trainer.
        loss_and_grad = mx.compile(loss_and_grad, inputs=model.state, outputs=model.state)
        state = [model.state, optimizer.state]
        update = mx.compile(update, inputs=state, outputs=state)

    def step(batch: Batch) -> Losses:
        (total, cls, ans), grads = loss_and_grad(global_counts(batch), *(getattr(batch, f) for f in batch_fields))
        values = mx.stack([total, cls, ans])
        if group is not None:
            values = mx.distributed.all_sum(values, group=group) / size
            grads = average_gradients(grads, group)
        mx.eval(values, grads)
        losses = Losses(*values.tolist())
        if not all(math.isfinite(v) for v in losses):
            raise Diverged(losses.total)
        update(grads)
        mx.eval(model.trainable_parameters(), optimizer.state)
        return losses

    return step


def snapshot_sets(heldout: Sequence[Sample], train_set: Sequence[Sample],
                  count: int) -> tuple[list[Sample], list[Sample]]:
    """(held-out, training) snapshot sets (docs/science.md "Snapshots"): ``count`` (``TrainConfig.snapshot_count``)
    fixed, class-balanced held-out problems, and the training-set twin: as many distinct *training* problems,
    class-balanced, fixed for the run (the first of each class in the training set's order), so memorisation is
    measured where it happens."""
    held = balanced_subset(heldout, count)
    problems = distinct(train_set)
    per_class = min(sum(s.label == c for s in problems) for c in CLASSES)
    return held, balanced_subset(problems, len(CLASSES) * min(count // len(CLASSES), per_class))


def snapshot_set(state: TrainState) -> list[Sample]:
    """The held-out snapshot set of ``state``'s run (``snapshot_sets``)."""
    return snapshot_sets(state.heldout, state.train_set, state.config.snapshot_count)[0]


def train_snapshot_set(state: TrainState) -> list[Sample]:
    """The training snapshot set of ``state``'s run (``snapshot_sets``)."""
    return snapshot_sets(state.heldout, state.train_set, state.config.snapshot_count)[1]


def snapshot(lens: LogitLens, loaded: LoadedModel, state: TrainState) -> Snapshot:
    """The lens on the held-out snapshot set and on its training-set twin, read in one pass."""
    sets = snapshot_sets(state.heldout, state.train_set, state.config.snapshot_count)
    held, train = sets_lens_stats(lens, loaded.tokenizer, sets, state.class_tokens)
    return Snapshot(state.step, held.prob, held.restricted_acc, held.top1_acc, held.class_prob,
                    train.prob, train.restricted_acc, train.top1_acc)


def rank_zero_decides(flag: bool, group: mx.distributed.Group | None) -> bool:
    """Rank 0's ``flag`` on every rank (``flag`` itself without a group). Decisions that end the loop are taken
    once, so the ranks stay in lockstep even if another rank's snapshot differed in the last bit."""
    if group is None:
        return flag
    mine = mx.array(float(flag) if group.rank() == 0 else 0.0)
    return bool(mx.distributed.all_sum(mine, group=group).item())


@dataclass(frozen=True)
class Trainer:
    """What a run computes with: its ``loss``, its ``batches`` and its lens ``snapshot`` (the defaults are the
    dual-reward run's). A test or a benchmark gives its own, e.g. ``Trainer(snapshot=scripted).train(...)``."""

    loss: Loss = dual_loss
    batches: Batches = scheduled_batches
    snapshot: Snapshotter = snapshot

    def train(
        self,
        loaded: LoadedModel,
        state: TrainState,
        callback: TrainingCallback | None = None,
        save: Callable[[TrainState], None] | None = None,
        group: mx.distributed.Group | None = None,
    ) -> TrainState:
        """Run ``state`` (from ``prepare`` or a loaded checkpoint) to ``config.steps``: one ``make_step`` call per
        batch of ``batches``. Status "complete" at the end, with ``stop_reason`` "steps"; with
        ``config.stop_when_readable`` the run stops early at the snapshot that makes ``STOP_STREAK`` consecutive
        readable ones (``History.readable_streak``; ``stop_reason`` "readable", ``step`` < ``config.steps``, which
        keeps the configured value). That step has its snapshot, so the history ends at a snapshot as a full run
        does. A resumed run that had stopped does not train further.

        ``callback`` hears of every step, every snapshot (with the seconds it took) and an early stop.

        ``group``: data-parallel over its ranks (``make_step``), each rank calling ``train`` with the same state;
        every rank takes the snapshots, rank 0 decides when to stop. The caller decides who saves (``save``).

        Ctrl-C: the save hook gets the last completed step (status "interrupted") and KeyboardInterrupt is
        re-raised. A non-finite loss stops before the update is applied: the state is saved (status
        "diverged") and LazarusError raised.
        """
        cfg, model = state.config, loaded.model
        if group is not None:
            cfg.check_ranks(group.size())
        lens = LogitLens(model)
        batches = iter(self.batches(loaded.tokenizer, state, group))
        step = make_step(model, state.optimizer, state.classifier_layer, cfg.cls_weight,
                         compile=cfg.compiles(cfg.steps - state.step), group=group, loss=self.loss)
        report = callback or TrainingCallback()

        def take_snapshot() -> None:
            t0 = time.perf_counter()
            snap = self.snapshot(lens, loaded, state)
            seconds = time.perf_counter() - t0
            state.history.snapshots.append(snap)
            report.on_snapshot(snap, seconds, state)

        def snapshot_pending() -> bool:  # due, and not already recorded (a resumed run may have it)
            recorded = bool(state.history.snapshots) and state.history.snapshots[-1].step == state.step
            return snapshot_due(state.step, cfg.steps, cfg.snapshot_every) and not recorded

        def readable_stop() -> bool:
            """Stop here, before the configured steps ran out? Asked at the start and after each snapshot: at the
            same steps on every rank (it is a collective with a group)."""
            acc = cfg.stop_when_readable
            return acc is not None and state.step < cfg.steps and rank_zero_decides(
                state.history.readable_streak(state.classifier_layer, acc), group)

        if snapshot_pending():
            take_snapshot()  # step 0 (the base model), or one a resumed run was interrupted before recording
        stopped = readable_stop()  # a resumed run that had stopped stays stopped
        try:
            while state.step < cfg.steps and not stopped:
                t0 = time.perf_counter()
                try:
                    losses = step(next(batches))
                except Diverged as exc:
                    state.status = "diverged"
                    if save is not None:
                        save(state)
                    raise LazarusError(
                        f"training diverged at step {state.step + 1} (loss {exc.loss}); the adapter of step "
                        f"{state.step} was kept; try a lower learning rate"
                    ) from None
                state.step += 1
                dt = time.perf_counter() - t0
                state.seconds += dt
                log = StepLog(state.step, *losses, dt)
                state.history.steps.append(log)
                report.on_step(log, state)
                if snapshot_pending():
                    take_snapshot()
                    stopped = readable_stop()
                    if stopped:
                        report.on_stop(state)
                periodic_save = bool(cfg.checkpoint_every) and state.step % cfg.checkpoint_every == 0
                if save is not None and state.step < cfg.steps and not stopped and periodic_save:
                    save(state)  # the last step (or the stop) is saved by the caller, with its metrics
        except KeyboardInterrupt:
            state.status = "interrupted"
            if save is not None:
                save(state)
            raise
        state.status = "complete"
        state.stop_reason = "readable" if stopped else "steps"
        return state


def train(loaded: LoadedModel, state: TrainState, **options: Any) -> TrainState:
    """The dual-reward run: ``Trainer().train(loaded, state, **options)`` (see there)."""
    return Trainer().train(loaded, state, **options)
