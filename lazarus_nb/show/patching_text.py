"""Activation patching as text: its settings, progress lines, where the effect lives in words, the layer x slot
table, and one patched pair for the widget (the CLI prints these lines, a notebook prints the same). Nothing here
computes a metric; :func:`slot_labels` is also what the figure writes under its columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lazarus_nb.data.labels import DESCRIPTIONS
from lazarus_nb.data.pairs import ORDERED, Pair
from lazarus_nb.show.format import format_layers, pct, prob, token
from lazarus_nb.train.config import TrainConfig

if TYPE_CHECKING:
    from lazarus_nb.measure.patch_summary import SlotStats
    from lazarus_nb.measure.patching import RunView
    from lazarus_nb.results.patching import ModelPatching, PairPatch, PatchingResult

OPERATOR, LAST = ("op", 1), ("end", 1)
"""The two slots the text speaks of: the operator token and the last prompt token (the classification position)."""

_NAMES = {"start": "BOS", "a": "a", "op": "OP", "space": "␣", "b": "b", "equals": "=", "end": "␣last"}

STRONG = 0.5
"""An effect at least this large is "strong" in the text (half of the way to the source run)."""


def slot_labels(result: PatchingResult) -> list[str]:
    """A label per slot: the target prompts' token there when every pair has that same one (``␣=``), else the
    part's name (``a1``, ``OP``, ``b2``); the operator slot in brackets, ``[␣+]`` or ``[OP]``."""
    labels = []
    for slot in result.slots:
        seen = [result.tokens[i][ids.slots.index(slot)] for i, ids in enumerate(result.ids) if slot in ids.slots]
        name, k = slot
        shared = len(set(seen)) == 1 and len(seen) == len(result.ids)
        label = token(seen[0], 6) if shared else _NAMES[name] + (str(k) if name in ("a", "b") else "")
        labels.append(f"[{label}]" if slot == OPERATOR else label)
    return labels


def settings(model: str, config: TrainConfig, pairs: Sequence[Pair], drawn: bool, seed: int, labels: Sequence[str],
             classifier_layer: int | None) -> list[str]:
    ops = {(p.source.label, p.target.label) for p in pairs}
    where = (f"drawn with seed {seed} from the held-out problems of the run (seed {config.seed}), over "
             f"{len(ops)} of the {len(ORDERED)} ordered operation pairs" if drawn else "given")
    lines = [f"Activation patching on {model}: {len(pairs)} pair{'s' if len(pairs) != 1 else ''} that differ only in "
             f"the operator, {where}",
             "  every block output at every prompt position copied from the source prompt's run into the target's; "
             "effect = (LD_patched - LD_target) / (LD_source - LD_target), LD = log P(source answer) - log P(target "
             "answer) after the target prompt, terminator included (0: the clean target run, 1: the clean source run)",
             f"  models: {', '.join(labels)}"]
    if classifier_layer is not None:
        lines.append(f"  the lens class at L{classifier_layer} (label map {config.label_map}: "
                     f"{DESCRIPTIONS[config.label_map]}) read after every patch of blocks 0-{classifier_layer}")
    return lines


def progress_line(label: str, pairs: int, num_layers: int, seconds: float) -> str:
    return f"  {label}: {pairs} pairs x {num_layers} layers x every prompt position in {seconds:.1f} s"


def _cell(stats: SlotStats, layer: int, slot: int) -> str:
    lo, hi = stats.lo[layer, slot], stats.hi[layer, slot]
    ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
    return f"{stats.mean[layer, slot]:.2f}{ci}"


def _where(stats: SlotStats, slot: int) -> str:
    """``strongest at L3, 1.02 [0.95, 1.09]; >= 0.5 at layers 0-12``."""
    column = stats.mean[:, slot]
    if not np.isfinite(column).any():
        return "no pairs"
    best = int(np.nanargmax(column))
    strong = [layer for layer, v in enumerate(column) if v >= STRONG]
    span = f"; >= {STRONG} at layers {format_layers(strong)}" if strong else f"; never >= {STRONG}"
    return f"strongest at L{best}, {_cell(stats, best, slot)}{span}"


def _model_lines(result: PatchingResult, m: ModelPatching) -> list[str]:
    s, slots = m.summary, result.slots
    n = int(s.effect.n.max())
    lines = [f"{m.label} (mean over {n} pairs, 95% t interval):"]
    for slot, what in ((OPERATOR, "at the operator"), (LAST, "at the last position")):
        if slot in slots:
            lines.append(f"  whole answer {what}: {_where(s.effect, slots.index(slot))}")
    if OPERATOR in slots and LAST in slots:
        op, last = s.effect.mean[:, slots.index(OPERATOR)], s.effect.mean[:, slots.index(LAST)]
        moved = next((layer for layer in range(len(op)) if last[layer] > op[layer]), None)
        lines.append("  the effect sits at the operator in every layer" if moved is None else
                     f"  the effect moves from the operator to the last position at L{moved} (the first layer where "
                     "patching the last position moves the answer more)")
    kept = len(m.pairs) - m.excluded_first_token
    for slot, what in ((OPERATOR, "at the operator"), (LAST, "at the last position")):
        if slot in slots:
            lines.append(f"  first answer token {what}: {_where(s.first_token, slots.index(slot))}")
    lines.append(f"  first-token effect over {kept} pairs: {m.excluded_first_token} left out (their answers start "
                 "with the same token)")
    if s.follows_source is not None and result.classifier_layer is not None:
        for slot, what in ((OPERATOR, "the operator"), (LAST, "the last position")):
            if slot in slots:
                j = slots.index(slot)
                column = s.follows_source.mean[:, j]
                best = int(np.nanargmax(column))
                top1 = s.follows_source_top1.mean[best, j] if s.follows_source_top1 is not None else None
                most = [layer for layer, v in enumerate(column) if v >= STRONG]
                span = f"in >= {pct(STRONG, 0)} of pairs at layers {format_layers(most)}" if most else (
                    f"in under {pct(STRONG, 0)} of pairs at every layer")
                lines.append(f"  lens class at L{result.classifier_layer} follows the source after a patch at {what}: "
                             f"{span}; most at L{best}, {pct(column[best], 0)} ({pct(top1, 0)} also full-vocab top-1)")
    return lines


def table(result: PatchingResult, m: ModelPatching) -> list[str]:
    """The mean effect on the whole answer at every layer x slot (the figure's heatmap as numbers)."""
    labels = slot_labels(result)
    width = max(6, *(len(x) for x in labels))
    lines = [f"{m.label}: mean effect per layer x prompt position",
             "  layer " + " ".join(f"{x:>{width}}" for x in labels)]
    for layer in range(result.num_layers):
        cells = (f"{v:>{width}.2f}" if np.isfinite(v) else f"{'':>{width}}" for v in m.summary.effect.mean[layer])
        lines.append(f"  {layer:>5} " + " ".join(cells))
    return lines


def summary(result: PatchingResult) -> list[str]:
    """Where the effect lives, in words, per model; then each model's layer x slot table."""
    lines = [""]
    for m in result.models:
        lines += _model_lines(result, m) + [""]
    for m in result.models:
        lines += table(result, m) + [""]
    lines.append(f"  slots: the prompt's parts ({'; '.join(f'{k} = {v}' for k, v in _NAMES.items())}), a1/b2 the "
                 f"operands' digits; [..] the operator; {result.seconds:.1f} s in all")
    return lines


def _run_line(name: str, run: RunView, words: Sequence[str]) -> str:
    cls = "" if run.cls is None else f"class {words[run.cls]}{' (top-1)' if run.cls_top1 else ''}; "
    top = ", ".join(f"{token(t, 10)} {prob(p)}" for t, p in run.top)
    return (f"  {name:<8} {cls}answer {run.answer!r}; P(source answer) {prob(run.p_source)}, P(target answer) "
            f"{prob(run.p_target)}; lens top: {top}")


def pair_patch(view: PairPatch) -> list[str]:
    """One patched pair beside its clean runs (the widget's text)."""
    at = token(view.tokens[view.position])
    return [f"{view.pair.name!r} on the {view.label}: block {view.layer}'s output at position {view.position} ({at}"
            f"{', the operator' if view.position == view.operator_position else ''}) copied from the source run; "
            f"the lens at L{view.classifier_layer}, last prompt position",
            _run_line("patched", view.patched, view.class_words),
            _run_line("target", view.target, view.class_words),
            _run_line("source", view.source, view.class_words)]
