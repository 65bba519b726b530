"""Figures from results: one call per figure the demo, the notebooks and the widgets draw.

:mod:`lazarus_nb.show.plots` draws plain arrays; this module knows the result objects
(:class:`~lazarus_nb.measure.probe.ProbeResult`, :class:`~lazarus_nb.train.loop.History`,
:class:`~lazarus_nb.measure.evaluate.Evaluation`, :class:`~lazarus_nb.results.lens.LensReport`) and unpacks them, so a
caller writes ``figures.loss_figure(history)`` instead of four list comprehensions, and a figure drawn by the
demo is the figure a notebook draws for the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from lazarus_nb import files
from lazarus_nb.errors import SettingError
from lazarus_nb.show.format import token
from lazarus_nb.show.patching_text import OPERATOR, slot_labels
from lazarus_nb.show.plots import ablation as ablation_plots
from lazarus_nb.show.plots import controls as controls_plots
from lazarus_nb.show.plots import emergence as emergence_plots
from lazarus_nb.show.plots import lens as lens_plots
from lazarus_nb.show.plots import patching as patching_plots
from lazarus_nb.show.plots import probe as probe_plots
from lazarus_nb.show.plots import reader as reader_plots
from lazarus_nb.show.plots import steering as steering_plots
from lazarus_nb.show.plots import sweep as sweep_plots
from lazarus_nb.show.plots import training as training_plots
from lazarus_nb.show.plots.emergence import ScrubFigure
from lazarus_nb.show.plots.grid import GridPanel, logit_lens_grid
from lazarus_nb.train.config import READABLE
from lazarus_nb.train.grid import final, series, spread

if TYPE_CHECKING:  # the result types only: their modules load mlx-lm, which drawing a figure does not need
    from lazarus_nb.measure.evaluate import Evaluation
    from lazarus_nb.measure.lens_grid import LensGrid
    from lazarus_nb.measure.probe import ProbeResult
    from lazarus_nb.results.ablation import AblationResult
    from lazarus_nb.results.controls import ControlComparison
    from lazarus_nb.results.lens import LensReport
    from lazarus_nb.results.patching import PatchingResult
    from lazarus_nb.results.reader import ReaderResult
    from lazarus_nb.results.steering import SteeringResult
    from lazarus_nb.train.history import History


def probe_figure(results: Mapping[str, ProbeResult], classifier_layer: int | None = None) -> Figure:
    """Probe accuracy by layer, one curve (with its shuffled-label control) per prompt family, overlaid.

    ``results`` maps a family name to its result, e.g. ``{"symbolic": ..., "words": ...}``; each curve is
    labelled "<family> prompts". Chance and the classifier-layer marker are drawn once.
    """
    if not results:
        raise ValueError("no probe results to plot")
    fig: Figure | None = None
    for family, res in results.items():
        ps = res.layers
        control = [p.control for p in ps]
        has_control = bool(np.isfinite(control).any())  # all nan when the probe ran without its control
        fig = probe_plots.probe_accuracy(
            [p.layer for p in ps], [p.accuracy for p in ps], [p.std for p in ps],
            control if has_control else None, [p.control_std for p in ps] if has_control else None,
            label=f"{family} prompts", chance=res.chance, classifier_layer=classifier_layer,
            ax=fig.axes[0] if fig is not None else None,
        )
    return fig


def _losses(history: History) -> tuple[list[int], list[float], list[float], list[float]]:
    log = history.steps
    return [s.step for s in log], [s.total for s in log], [s.cls_loss for s in log], [s.ans_loss for s in log]


def loss_figure(history: History) -> Figure:
    """Total, classification and answer loss of every training step."""
    return training_plots.loss_curves(*_losses(history))


def emergence_figures(history: History, classifier_layer: int | None = None,
                      on: str = "heldout") -> tuple[Figure, Figure]:
    """(heatmap, curves) of the snapshots' mean P(correct class token) by layer and training step, on the held-out
    snapshot set or (``on="train"``) its training-set twin."""
    steps, layers, values = history.emergence("prob" if on == "heldout" else "train_prob")
    return (emergence_plots.emergence_heatmap(steps, layers, values, classifier_layer=classifier_layer),
            emergence_plots.emergence_curves(steps, layers, values, classifier_layer=classifier_layer))


def update_dashboard(dashboard: training_plots.Dashboard, history: History,
                     classifier_layer: int | None = None) -> Figure:
    """Redraw the live training dashboard in place from ``history`` (so far); returns its (same) figure."""
    steps, layers, values = history.emergence("prob")
    dashboard.update(*_losses(history), steps, layers, values, classifier_layer=classifier_layer)
    return dashboard.fig


def lens_figure(evaluation: Evaluation, title: str | None = None) -> Figure:
    """Held-out logit lens of one evaluation: per class, the mean P(own class token) at every layer, with its
    classifier layer marked."""
    kw = {"title": title} if title is not None else {}
    return lens_plots.lens_probability(evaluation.lens.layers, evaluation.lens.class_prob,
                                  classifier_layer=evaluation.layer, **kw)


def lens_before_after_figure(base: Evaluation, adapted: Evaluation) -> Figure:
    """The held-out lens of the base model next to the adapted one's (same layers), at the adapted
    evaluation's classifier layer."""
    return lens_plots.lens_before_after(base.lens.layers, base.lens.class_prob, adapted.lens.class_prob,
                                   classifier_layer=adapted.layer)


def prompt_lens_figure(report: LensReport, classifier_layer: int | None = None, prompt: int = 0,
                       title: str | None = None) -> Figure:
    """One prompt of a lens report: P(target token) at the last prompt token, per target, at every layer read."""
    entry = report.prompts[prompt]
    probs = {w: [row.targets[w].prob for row in entry.layers] for w in report.targets}
    fig = lens_plots.lens_probability(report.layers, probs, classifier_layer=classifier_layer,
                                 title=title or f"Logit lens on {entry.prompt!r}")
    fig.axes[0].set_ylabel("P(class token) at the last prompt token")  # one prompt, not a class mean
    return fig


def top_tokens_figure(report: LensReport, layer: int, title: str | None = None) -> Figure:
    """A table of each prompt's top tokens under the lens at ``layer`` (one of the report's layers)."""
    if layer not in report.layers:
        raise ValueError(f"layer {layer} was not read; the report has layers {report.layers}")
    rows = [(p.prompt, p.at(layer).top) for p in report.prompts]
    k = max(len(top) for _, top in rows) if rows else 0
    return lens_plots.top_tokens_table(rows, title=title or f"Logit lens at layer {layer}: top-{k} tokens")


MEAN_LABEL = "all classes (mean)"
"""The scrubber's one line for a history recorded before snapshots kept per-class values."""


def scrub_figure(history: History, classifier_layer: int | None = None) -> ScrubFigure:
    """The emergence scrubber's figure of ``history``'s snapshots (``ScrubFigure.show(i)`` selects one): per
    class, P(own class token) by layer at the selected snapshot, next to the emergence heatmap. A history whose
    snapshots predate per-class values (an older checkpoint) gets one line, the mean over classes; in a history
    that is partly older (a resumed run), the older snapshots' lines are empty (NaN)."""
    if not history.snapshots:
        raise ValueError("the history has no snapshots yet")
    steps, layers, values = history.emergence("prob")
    names = list(dict.fromkeys(c for s in history.snapshots for c in s.class_prob))
    if names:
        missing = [np.nan] * len(layers)
        per_class = {c: np.array([s.class_prob.get(c, missing) for s in history.snapshots]) for c in names}
    else:
        per_class = {MEAN_LABEL: values.T}
    return ScrubFigure(steps, layers, values, per_class, classifier_layer=classifier_layer)


def lens_grid_figure(grids: Sequence[Sequence[LensGrid]]) -> Figure:
    """Logit-lens grids (``lens_grid.compare`` per prompt): one row per prompt, its models (base, adapted)
    side by side."""
    def panel(g: LensGrid) -> GridPanel:
        cut = f", last {len(g.positions)} of {g.n_tokens} tokens" if len(g.positions) < g.n_tokens else ""
        return GridPanel(f"{g.prompt!r}: {g.label}{cut}", g.layers, g.tokens, g.next_tokens, g.top_tokens,
                         g.top_probs)

    return logit_lens_grid([[panel(g) for g in row] for row in grids])


FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def check_figure_path(path: str | Path, force: bool = False, field: str = "figure") -> None:
    """Before anything runs: one sentence if ``plot_output.save`` could not (or must not) write a figure to ``path``:
    not .png/.svg/.pdf, or not a new file in an existing, writable directory (an existing one only with ``force``:
    ``files.check_output``)."""
    if Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise SettingError(field, f"{{field}} '{path}' must end in {', '.join(FIGURE_SUFFIXES[:-1])} or "
                                  f"{FIGURE_SUFFIXES[-1]} (the figure's format)")
    files.check_output(path, "file", force, field=field, new_parents=False)


TRADE_OFF_X: dict[str, str] = {
    "answer_accuracy": "exact answer accuracy (held-out, greedy)",
    "answer_nll": "answer NLL per token (held-out, teacher-forced)",
    "kl_general": "KL(base || adapted) on general text, nats/token",
}
"""The trade-off figure's panels: a ``final`` key of the sweep rows -> its axis label."""


def _spreads(groups: Sequence[Sequence[Mapping[str, Any]]], value: Callable[[Mapping[str, Any]], Any]) -> np.ndarray:
    """(3, n): mean, min and max over each group's rows (its seeds) of ``value(row)``; NaN where none measured."""
    out = np.full((3, len(groups)), np.nan)
    for j, rows in enumerate(groups):
        s = spread(value(r) for r in rows)
        if s is not None:
            out[:, j] = (s.mean, s.lo, s.hi)
    return out


def trade_off_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Lens top-1 at the classifier layer (held-out, full vocabulary) against exact answer accuracy, answer NLL
    and KL on general text: one point per cls_weight at the mean over seeds, bars from the seeds' min to max;
    one series per setting of the other grid fields (classifier layer, label map, rank, learning rate)."""
    data = {}
    for label, points in series(rows, ("cls_weight",)).items():
        groups = list(points.values())
        data[label] = {"cls_weight": [k[0] for k in points],
                       "y": _spreads(groups, lambda r: final(r, "heldout_top1_accuracy")),
                       **{key: _spreads(groups, lambda r, key=key: final(r, key)) for key in TRADE_OFF_X}}
    layers = sorted({r["config"]["classifier_layer"] for r in rows})
    at = f"L{layers[0]}" if len(layers) == 1 else "the classifier layer"
    return sweep_plots.trade_off(data, TRADE_OFF_X, f"held-out lens top-1 at {at}", fractions=("answer_accuracy",))


def steps_to_readable_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Steps to readable by classifier layer x cls_weight (mean over the seeds that became readable; "not
    readable" where none did), one heatmap per setting of the other grid fields."""
    panels = {}
    for label, cells in series(rows, ("classifier_layer", "cls_weight")).items():
        layers, weights = sorted({k[0] for k in cells}), sorted({k[1] for k in cells})
        steps = np.full((len(layers), len(weights)), np.nan)
        readable, runs = np.zeros(steps.shape, int), np.zeros(steps.shape, int)
        for (layer, weight), group in cells.items():
            i, j = layers.index(layer), weights.index(weight)
            s = spread(r.get("steps_to_readable") for r in group)
            runs[i, j], readable[i, j] = len(group), s.n if s else 0
            steps[i, j] = s.mean if s else np.nan
        panels[label] = {"cls_weight": weights, "layers": layers, "steps": steps, "readable": readable, "runs": runs}
    return sweep_plots.readable_heatmap(panels)


CONTROL_SETS = {"heldout": "held-out problems (generalisation)", "train": "training problems (memorisation)"}
"""The control figure's panel titles by snapshot set."""


def controls_figure(comparison: ControlComparison) -> Figure:
    """The truth beside each control: lens top-1 at the classifier layer against training step, on held-out and on
    training problems, each label map's seed mean with its min..max band."""
    panels = {k: {m: (c.steps, [c.by_seed[s] for s in sorted(c.by_seed)]) for m, sets in comparison.curves.items()
                  if (c := sets.get(k)) is not None} for k in CONTROL_SETS}
    where = ", ".join(f"{k}={v}" for k, v in comparison.settings.items())
    title = (f"Control tasks: lens top-1 at L{comparison.classifier_layer} on {comparison.n} problems per set"
             + (f" ({where})" if where else ""))
    return controls_plots.controls_curves({k: v for k, v in panels.items() if v}, CONTROL_SETS, title, READABLE)


def sweep_figures(rows: Sequence[Mapping[str, Any]], controls: Sequence[ControlComparison] = ()) -> dict[str, Figure]:
    """The sweep's figures by file name: ``trade_off.png``, ``steps_to_readable.png`` and, for a grid with the
    truth and controls, ``controls.png`` (``controls_1.png``, ... for each further setting of the other axes)."""
    out = {"trade_off.png": trade_off_figure(rows), "steps_to_readable.png": steps_to_readable_figure(rows)}
    for i, comparison in enumerate(controls):
        out[f"controls{f'_{i}' if i else ''}.png"] = controls_figure(comparison)
    return out


def reader_figure(result: ReaderResult) -> Figure:
    """The reader-only baseline: held-out full-vocab top-1 of the trained reader by layer with its 95% intervals,
    beside the plain logit lens (the same reader at step 0), the readable threshold and the classifier layer."""
    held, plain = result.heldout.to_dict(), result.plain.to_dict()
    shown = result.classifier_layer if result.classifier_layer in result.layers else None
    return reader_plots.reader_accuracy(result.layers, held["top1_acc"], held["top1_acc_ci"], plain["top1_acc"],
                                        plain["top1_acc_ci"], READABLE, classifier_layer=shown, n=result.heldout.n,
                                        title=f"Reader-only baseline on {result.model} (label map {result.label_map})")


ABLATION_COSTS = {"answer_nll": "answer NLL rise (per token)", "exact": "exact-answer drop",
                  "kl": "KL on general text (nats)", "lens_restricted": "lens class accuracy drop"}
"""The ablation figure's columns: a cost of ``measure.ablation.COSTS`` -> its title."""


def ablation_figure(result: AblationResult) -> Figure:
    """The subspace ablation: per model and cost, the random subspaces' costs as points, the class subspace's marked
    (and, adapted, the adapter switched off up to the layer)."""
    panels = {}
    for m in (result.base, result.adapted):
        panels[m.label] = {c: ([m.cost(c, r) for r in m.random], m.cost(c, m.class_subspace),
                               m.cost(c, m.lower_lora_off) if m.lower_lora_off is not None else None)
                           for c in ABLATION_COSTS}
    title = (f"Removing the class-readout subspace ({result.subspace}, dimension {result.dimension}, {result.mode}) "
             f"at L{result.layer} of {result.model}, against {result.draws} random subspaces")
    return ablation_plots.ablation_strips(panels, ABLATION_COSTS, title,
                                          other_label=f"LoRA off at blocks 0-{result.layer}")


STEERING_PANELS = {"p_to": "P({to} answer | {from} prompt)", "p_from": "P({from} answer | {from} prompt)",
                   "lens_to": "lens class = {to} (share of prompts)"}
"""The steering figure's panels and their titles."""


def steering_figure(result: SteeringResult) -> Figure:
    """Steering: per pair, P(to answer), P(from answer) and the lens-class-to share against alpha with their 95%
    intervals, base beside adapted."""
    pairs = {}
    for pair in result.pairs:
        models = {}
        for curve in pair.curves:
            points = curve.to_dict()["points"]
            models[curve.label] = {k: ([d[k] for d in points], [d[f"{k}_ci"] for d in points])
                                   for k in STEERING_PANELS}
        pairs[f"{pair.from_op} -> {pair.to_op}"] = models
    where = "the last prompt token" if result.positions == "last" else "every prompt token"
    title = (f"Steering at L{result.layer} ({where}) of {result.model}; lens class at L{result.lens_layer}; "
             "bands: 95% intervals")
    return steering_plots.steering_curves(result.alphas, pairs, STEERING_PANELS, title)

def patching_figure(result: PatchingResult) -> Figure:
    """Activation patching: the mean effect over pairs at every layer x prompt slot, on the whole answer and on its
    first token, and (with adapters) the fraction of pairs whose lens class at the classifier layer follows the
    source; the base model beside the adapted one. Above the classifier layer a patch leaves the class as the
    target's, so those cells are the clean target run's."""
    models = [m.summary for m in result.models]
    rows = [patching_plots.HeatRow("whole answer", [s.effect.mean for s in models], -1.0, 1.0, "RdBu_r",
                                   "effect (0 target run, 1 source run)"),
            patching_plots.HeatRow("first answer token", [s.first_token.mean for s in models], -1.0, 1.0, "RdBu_r",
                                   "effect (0 target run, 1 source run)")]
    layer = result.classifier_layer
    if layer is not None and result.source_classes is not None and all(s.follows_source is not None for s in models):
        follows = []
        for m in result.models:
            above = np.mean([p.clean_reads.cls[0] == c for p, c in zip(m.pairs, result.source_classes)])
            values = np.full((result.num_layers, len(result.slots)), above)
            values[: layer + 1] = m.summary.follows_source.mean
            follows.append(values)
        rows.append(patching_plots.HeatRow(f"lens class at L{layer} follows the source", follows, 0.0, 1.0, "viridis",
                                           "fraction of pairs"))
    operator = result.slots.index(OPERATOR) if OPERATOR in result.slots else None
    return patching_plots.patching_heatmaps(
        rows, [m.label for m in result.models], slot_labels(result), operator, layer,
        f"Activation patching on {result.model}: {len(result.pairs)} pairs, mean over pairs\n"
        "(one block output at one position copied from the source prompt's run into the target's)")


def pair_patching_figure(result: PatchingResult, pair: int, label: str, layer: int, position: int) -> Figure:
    """One pair's effect on the whole answer at every layer x position of its target prompt, on the model ``label``
    of ``result``, with the cell (``layer``, ``position``) outlined (the patching widget's figure)."""
    model = next((m for m in result.models if m.label == label), None)
    if model is None:
        raise ValueError(f"no {label!r} in this result: it holds {', '.join(m.label for m in result.models)}")
    chosen, ids = result.pairs[pair], result.ids[pair]
    row = patching_plots.HeatRow("whole answer", [model.pairs[pair].effect], -1.0, 1.0, "RdBu_r",
                                 "effect (0 target run, 1 source run)")
    labels = [token(t, 6) for t in result.tokens[pair]]
    return patching_plots.patching_heatmaps(
        [row], [label], labels, ids.first, result.classifier_layer,
        f"{chosen.name!r}: patched at L{layer}, position {position} ({labels[position]})", mark=(layer, position))
