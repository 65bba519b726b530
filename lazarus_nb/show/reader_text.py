"""The reader-only baseline as text: its settings, its progress lines and its per-layer table, as lines (the CLI
prints them, a notebook prints the same). Nothing here computes a metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lazarus_nb.data.labels import DESCRIPTIONS
from lazarus_nb.measure.evaluate import interval_of
from lazarus_nb.show.format import format_layers, pct, prob
from lazarus_nb.show.text import interval
from lazarus_nb.train.config import READABLE, TrainConfig

if TYPE_CHECKING:
    from lazarus_nb.results.reader import ReaderResult, ReaderSnapshot


def settings(config: TrainConfig, layers: Sequence[int], params_per_layer: int) -> list[str]:
    """What is trained, on what, with which budget."""
    return [
        f"Reader-only baseline: the model frozen, a reader h -> h + B A h + b before the final norm and unembedding "
        f"at layers {format_layers(layers)}",
        f"  rank {config.lora_rank}: {params_per_layer:,} trainable parameters per layer (A r x D, B D x r, b D); "
        f"B = 0, b = 0 at step 0 (the plain logit lens)",
        f"  label map {config.label_map} ({DESCRIPTIONS[config.label_map]}); {config.num_samples} training problems, "
        f"{config.heldout_samples} held-out; {config.steps} Adam steps of {config.batch_size} (the dual-reward run's "
        f"batches), learning rate {config.learning_rate:g}, seed {config.seed}",
    ]


def hidden_line(problems: int, layers: int, seconds: float) -> str:
    return f"Hidden states of {problems} distinct problems at {layers} layers, computed once: {seconds:.1f} s"


def training_line(layers: int, steps: int) -> str:
    return f"Training the reader at {_count(layers, 'layer')} for {_count(steps, 'step')}..."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def snapshot_line(snap: ReaderSnapshot, layers: Sequence[int], loss: float | None) -> str:
    """One snapshot: the loss and the best layer's full-vocab top-1 on the held-out snapshot set."""
    top1 = snap.heldout.top1_acc
    best = max(range(len(layers)), key=lambda i: top1[i])
    shown = "" if loss is None else f"loss {loss:.3f}  "
    return (f"  step {snap.step:>4}  {shown}held-out top-1 (snapshot set, {snap.heldout.n}): best "
            f"{pct(top1[best])} at L{layers[best]}, mean over layers {pct(sum(top1) / len(top1))}")


def summary(result: ReaderResult) -> list[str]:
    """The per-layer table: the plain lens and the trained reader on the held-out set, the reader on the training
    problems, and the step it became readable."""
    ready = result.steps_to_readable()
    n = result.config.snapshot_every
    every = f"every {_count(n, 'step')}" if n else "at the first and last step"
    head = (f"  {'layer':>5}  {'plain lens':>10}  {'reader top-1 [95% CI]':>22}  {'restricted':>10}  {'P(class)':>8}  "
            f"{'train top-1':>11}  {'readable at':>11}")
    lines = ["", f"Reader-only baseline on {result.model} (label map {result.label_map}): full-vocab top-1 on "
                 f"{result.heldout.n} held-out problems", head, "  " + "-" * (len(head) - 2)]
    for i, layer in enumerate(result.layers):
        top1 = result.heldout.top1_acc[i]
        at = "never" if ready[i] is None else f"step {ready[i]}"
        lines.append(f"  {layer:>5}  {pct(result.plain.top1_acc[i]):>10}  "
                     f"{pct(top1) + ' ' + interval(interval_of(top1, result.heldout.n)):>22}  "
                     f"{pct(result.heldout.restricted_acc[i]):>10}  {prob(result.heldout.prob[i]):>8}  "
                     f"{pct(result.train.top1_acc[i]):>11}  {at:>11}")
    lines += [
        f"  plain lens: the same lens before training (B = 0); restricted: argmax over the "
        f"{len(result.class_tokens.ids)} class tokens; train top-1 on {result.train.n} distinct training problems; "
        f"readable at: the first snapshot ({every}) with full-vocab top-1 >= "
        f"{pct(READABLE, 0)} on the {result.snapshots[0].heldout.n}-problem held-out snapshot set, as for a "
        "dual-reward run",
        f"  {result.params_per_layer:,} parameters per layer; {result.seconds:.1f} s "
        f"({result.hidden_seconds:.1f} s of it for the hidden states)",
    ]
    return lines
