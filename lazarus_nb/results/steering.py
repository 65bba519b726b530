"""The steering result (docs/science.md "Steering"): per ordered pair of operations and per model (base, adapted), the
dose-response over alpha of P(op A's answer), P(op B's answer) and the lens's class at the classifier layer on op-B
prompts steered by alpha * (mean h_l[op A] - mean h_l[op B]), with 95% intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lazarus_nb.data.tokens import ClassTokens
from lazarus_nb.files import json_clean
from lazarus_nb.measure.evaluate import wilson
from lazarus_nb.measure.selectivity import t_interval
from lazarus_nb.measure.steering import SteeredPoint
from lazarus_nb.results.lens import token_dicts


def mean_and_interval(values: list[float]) -> tuple[float, list[float] | None]:
    """The mean of per-prompt probabilities and its 95% Student t interval over prompts, clipped to [0, 1]."""
    ci = t_interval(values)
    return float(np.mean(values)), None if ci is None else [max(0.0, ci[0]), min(1.0, ci[1])]


def point_dict(p: SteeredPoint) -> dict[str, Any]:
    """One alpha's summary: mean probabilities with t intervals, lens fractions with Wilson intervals."""
    p_to, p_to_ci = mean_and_interval(p.p_to)
    p_from, p_from_ci = mean_and_interval(p.p_from)
    return {"alpha": p.alpha, "n": p.n, "p_to": p_to, "p_to_ci": p_to_ci, "p_from": p_from, "p_from_ci": p_from_ci,
            "lens_to": p.lens_to / p.n, "lens_to_ci": list(wilson(p.lens_to, p.n)),
            "lens_top1_to": p.lens_top1_to / p.n, "lens_top1_to_ci": list(wilson(p.lens_top1_to, p.n)),
            "p_to_by_prompt": list(p.p_to), "p_from_by_prompt": list(p.p_from)}


@dataclass
class SteerCurve:
    """One model's dose-response for one pair: ``label`` is ``"base"`` (adapters off) or ``"adapted"``."""

    label: str
    points: list[SteeredPoint]  # one per alpha, in the order of the alphas
    vector_norm: float  # ||mean h_l[A] - mean h_l[B]||
    from_norm: float  # ||mean h_l[B]||: the scale the vector is added at

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "vector_norm": self.vector_norm, "from_norm": self.from_norm,
                "points": [point_dict(p) for p in self.points]}


@dataclass
class PairSteering:
    """Op-B (``from_op``) prompts steered toward op A (``to_op``)."""

    from_op: str
    to_op: str
    prompts: list[str]  # the held-out op-B prompts whose operands are also a valid op-A problem
    curves: list[SteerCurve]  # base first, then adapted (when an adapter was given)

    def to_dict(self) -> dict[str, Any]:
        return {"from_op": self.from_op, "to_op": self.to_op, "n": len(self.prompts), "prompts": list(self.prompts),
                "curves": {c.label: c.to_dict() for c in self.curves}}


@dataclass
class SteeringResult:
    """Everything ``introspect steer`` reports."""

    model: str
    adapter: str | None
    num_layers: int
    layer: int  # where the vector is added
    lens_layer: int  # where the lens class is read: the classifier layer
    positions: str  # "last" (the last prompt token) or "prompt" (every prompt token)
    alphas: list[float]
    label_map: str
    class_tokens: ClassTokens
    train_prompts: dict[str, int]  # per operation: the distinct training prompts its mean is taken over
    pairs: list[PairSteering]
    seconds: float
    model_seconds: dict[str, float]  # per model: its means and every pair's alphas

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (``files.json_clean``)."""
        return json_clean({
            "model": self.model,
            "adapter": self.adapter,
            "num_layers": self.num_layers,
            "layer": self.layer,
            "lens_layer": self.lens_layer,
            "positions": self.positions,
            "alphas": list(self.alphas),
            "label_map": self.label_map,
            **token_dicts(self.class_tokens),
            "train_prompts": dict(self.train_prompts),
            "vector": "mean h_l[to_op] - mean h_l[from_op] at the last prompt token over training prompts",
            "p_to": "mean P(to_op's answer | from_op's prompt), teacher-forced, terminator included (t interval)",
            "lens_to": "share of prompts whose lens class at lens_layer (class-restricted argmax) is to_op's word "
                       "(Wilson interval)",
            "pairs": [p.to_dict() for p in self.pairs],
            "seconds": self.seconds,
            "model_seconds": dict(self.model_seconds),
        })
