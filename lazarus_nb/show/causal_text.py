"""The ablation and steering tests as text: their settings, progress lines and summary tables, as lines (the CLI
prints them, a notebook prints the same). Nothing here computes a metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lazarus_nb.data.tokens import ClassTokens
from lazarus_nb.measure.ablation import COSTS, LEVEL, Scores
from lazarus_nb.measure.evaluate import wilson
from lazarus_nb.results.steering import point_dict
from lazarus_nb.show.format import pct, prob
from lazarus_nb.show.text import interval

if TYPE_CHECKING:
    from lazarus_nb.results.ablation import AblationResult, ModelAblation
    from lazarus_nb.results.steering import SteerCurve, SteeringResult

COST_NAMES = {"answer_nll": "answer NLL rise", "exact": "exact-answer drop", "kl": "KL on general text",
              "lens_restricted": "lens class drop"}
"""The costs' short names in tables (``measure.ablation.COSTS``)."""


def ablation_settings(model: str, layer: int, subspace: str, dim: int, mode: str, draws: int, problems: int,
                      tokens: ClassTokens) -> list[str]:
    """What is removed, where, and against what."""
    what = "g*u_w" if subspace == "full" else "g*(u_w - mean u)"
    how = "projected out" if mode == "project" else "replaced by the training mean's component"
    return [f"Subspace ablation on {model} at L{layer}: span{{{what} : w in {', '.join(tokens.words)}}} "
            f"(dimension {dim}) {how} at every position of block {layer}'s output",
            f"  against {draws} random subspaces of dimension {dim}; {problems} held-out problems (teacher-forced), "
            "general-text KL; base model (adapters off), then adapted"]


def _cost_cells(scores: Scores, reference: Scores) -> str:
    c = {m: f(scores, reference) for m, f in COSTS.items()}
    return (f"dNLL {c['answer_nll']:+.3f}  exact {scores.exact}/{scores.n}  KL {c['kl']:.3f}  "
            f"lens class {pct(scores.lens_restricted, 0)}")


def draw_line(label: str, i: int, draws: int, scores: Scores, reference: Scores) -> str:
    return f"  {label} random {i:>2}/{draws}: {_cost_cells(scores, reference)}"


def model_done_line(label: str, seconds: float) -> str:
    return f"  {label}: {seconds:.1f} s"


def _model_table(m: ModelAblation) -> list[str]:
    ref = m.unablated
    rows = [("unablated", ref), ("class subspace", m.class_subspace)]
    if m.lower_lora_off is not None:
        rows.append(("LoRA off at <= L", m.lower_lora_off))
    head = (f"    {'condition':<17} {'answer NLL':>10} {'exact [95% CI]':>22} {'KL':>7} {'lens class':>10} "
            f"{'lens top-1':>10} {'P(class)':>8} {'removed':>8}")
    lines = [head]
    for name, s in rows:
        exact = f"{s.exact}/{s.n} {interval(wilson(s.exact, s.n))}"
        lines.append(f"    {name:<17} {s.answer_nll:>10.3f} {exact:>22} {s.kl:>7.3f} {pct(s.lens_restricted):>10} "
                     f"{pct(s.lens_top1):>10} {prob(s.lens_prob):>8} {pct(s.removed, 2):>8}")
    lines.append(f"    class subspace against {len(m.random)} random subspaces (cost: larger = worse):")
    for metric, c in m.comparisons().items():
        lines.append(f"      {COST_NAMES[metric]:<20} {c.value:+.4f}  random mean {c.random_mean:+.4f} "
                     f"[{c.random_min:+.4f}, {c.random_max:+.4f}]  p = {c.p_value:.3f}  -> {m.verdicts()[metric]}")
    return lines


def ablation_summary(result: AblationResult) -> list[str]:
    """Per model: the conditions' scores and the class subspace's costs against the random draws, then the
    headline (the answer NLL's verdict on the adapted model)."""
    lines = ["", f"Subspace ablation at L{result.layer} ({result.subspace}, dimension {result.dimension}, "
                 f"{result.mode}): {result.problems} held-out problems, KL over {result.text_positions} general-text "
                 "positions"]
    for m in (result.base, result.adapted):
        lines += ["", f"  {m.label}:", *_model_table(m)]
    answer = result.adapted.verdicts()["answer_nll"]
    meaning = ("removing the readable word costs the answer more than removing a random subspace"
               if answer == "above random" else
               "removing the readable word costs the answer no more than a random subspace: by this test the word "
               "is not what the model answers from")
    lines += ["", f"  Headline (adapted, answer NLL, p <= {LEVEL:g} rule): {answer}: {meaning}",
              f"  {result.seconds:.1f} s"]
    return lines


def steering_settings(model: str, layer: int, lens_layer: int, positions: str, alphas: Sequence[float],
                      pairs: Sequence[tuple[str, str]], train_prompts: dict[str, int]) -> list[str]:
    """What is added, where, and over which training prompts the means are taken (``train_prompts``: per
    operation)."""
    where = "the last prompt token" if positions == "last" else "every prompt token"
    shown = ", ".join(f"{b} -> {a}" for b, a in pairs)
    means = ", ".join(f"{n} {op}" for op, n in train_prompts.items())
    return [f"Steering on {model} at L{layer} ({where}), lens class read at L{lens_layer}: {shown}",
            f"  alpha in {', '.join(f'{a:g}' for a in alphas)} times (mean h[to] - mean h[from]), means over the "
            f"distinct training problems ({means}); on the held-out from-op prompts whose operands are valid for both"]


def skipped_pair_line(from_op: str, to_op: str) -> str:
    return f"  skipped {from_op} -> {to_op}: no held-out {from_op} problem's operands make a valid {to_op} problem"


def steer_line(label: str, from_op: str, to_op: str, curve: SteerCurve) -> str:
    ends = curve.points[0], curve.points[-1]
    moved = ", ".join(f"alpha {p.alpha:g}: P({to_op}) {prob(sum(p.p_to) / p.n)}, lens {p.lens_to}/{p.n}"
                      for p in ends)
    return f"  {label} {from_op} -> {to_op} (|v| {curve.vector_norm:.1f}, |mean h| {curve.from_norm:.1f}): {moved}"


def steering_summary(result: SteeringResult) -> list[str]:
    """Per pair and model, per alpha: mean P(to answer), mean P(from answer) and the lens class fraction with their
    95% intervals."""
    lines = []
    for pair in result.pairs:
        lines += ["", f"{pair.from_op} prompts steered toward {pair.to_op} at L{result.layer} ({len(pair.prompts)} "
                      f"held-out prompts; lens class at L{result.lens_layer})"]
        for curve in pair.curves:
            lines.append(f"  {curve.label}: {'alpha':>6}  {'P(' + pair.to_op + ' answer)':>30}  "
                         f"{'P(' + pair.from_op + ' answer)':>30}  {'lens class = ' + pair.to_op:>26}")
            for p in curve.points:
                d = point_dict(p)
                lines.append(f"  {'':{len(curve.label)}}  {p.alpha:>6g}  {_with(d['p_to'], d['p_to_ci']):>30}  "
                             f"{_with(d['p_from'], d['p_from_ci']):>30}  "
                             f"{pct(d['lens_to'], 0) + ' ' + interval(d['lens_to_ci']):>26}")
    lines += ["  (probabilities: mean over prompts, 95% t interval; lens class: class-restricted argmax, Wilson "
              "interval)", f"  {result.seconds:.1f} s"]
    return lines


def _with(value: float, ci: Sequence[float] | None) -> str:
    return prob(value) + ("" if ci is None else f" [{prob(ci[0])}, {prob(ci[1])}]")
