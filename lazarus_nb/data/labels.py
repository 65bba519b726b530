"""Label maps: which class word the lens at the classifier layer is trained to read for each problem
(docs/science.md "Control tasks").

A label map turns a problem into a *target*, an index into the run's class tokens. ``true`` reads the operation
class itself. The controls give the lens a target of the same shape (four classes, the same prompts, batches
and step budget) that says something else:

* ``permuted``: another class's word (:data:`PERMUTED`). Still a function of the operation, so it cannot tell
  a pre-existing operation signal made readable from a lookup the adapter taught: both predict its speed.
* ``operand``: a fixed, seeded, class-balanced random class per value of the first operand (a type-level
  control task, Hewitt & Liang 2019). Learnable, and it generalises to held-out problems whose first operand was
  seen in training, but it is not the operation.
* ``problem``: a seeded random class per problem (:func:`~lazarus_nb.data.prompts.problem`): memorisation only.
  A held-out problem has no learnable answer, so its held-out accuracy is chance by construction; its training-set
  curve is the measurement.

Targets are attached to samples (:attr:`Sample.target`) once, where a run builds its data, so every loss and
readout after that reads ``Sample.target_index`` and never asks which map made it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lazarus_nb.data.prompts import CLASSES, OperandRanges, Sample, all_triples, problem, triple
from lazarus_nb.errors import LazarusError

LABEL_MAPS: tuple[str, ...] = ("true", "permuted", "operand", "problem")
"""The label maps: the operation's own word, and the three control tasks."""


CONTROLS: tuple[str, ...] = LABEL_MAPS[1:]


PERMUTED: dict[str, str] = {"multiply": "divide", "add": "multiply", "subtract": "add", "divide": "subtract"}
"""The permuted-label control's fixed derangement, class -> the word its lens target is: :data:`CLASSES`
shifted by one (class k reads word k - 1), so no class keeps its own word and no two classes merely swap
theirs."""


DESCRIPTIONS: dict[str, str] = {
    "true": "the operation's own word",
    "permuted": "another operation's word (" + ", ".join(f"{c}->{w}" for c, w in PERMUTED.items()) + ")",
    "operand": "a fixed random class per first operand (type-level control)",
    "problem": "a random class per problem (memorisation control)",
}
"""One line per label map, for help texts and reports."""


def check_label_map(label_map: str) -> None:
    if label_map not in LABEL_MAPS:
        raise LazarusError(f"label map must be one of {', '.join(LABEL_MAPS)}, got {label_map!r}")


def target_words(label_map: str = "true") -> tuple[str, ...]:
    """The run's class words in target-index order: :data:`PERMUTED`'s for ``permuted`` (target k of class k is
    read as ``PERMUTED[CLASSES[k]]``), the class words themselves for every other map."""
    check_label_map(label_map)
    return tuple(PERMUTED[c] for c in CLASSES) if label_map == "permuted" else CLASSES


def operand_classes(seed: int, ranges: OperandRanges | None = None) -> dict[int, int]:
    """The ``operand`` control's map: every first-operand value any operation can draw -> a class index.
    The values are shuffled with ``seed`` and dealt round-robin, so each class holds a quarter of them (give
    or take one)."""
    ranges = ranges or OperandRanges()
    values = sorted({a for c in CLASSES for a, _ in all_triples(c, ranges)})
    random.Random(f"operand:{seed}").shuffle(values)
    return {a: i % len(CLASSES) for i, a in enumerate(values)}


def problem_class(seed: int, s: Sample) -> int:
    """The ``problem`` control's class of ``s``: a hash of ``seed`` and the problem (``a + b`` is ``b + a``),
    the same on every machine and independent of the order problems are drawn in."""
    a, op, b = problem(triple(s))
    digest = hashlib.sha256(f"problem:{seed}:{a} {op} {b}".encode()).digest()
    return digest[0] % len(CLASSES)


@dataclass(frozen=True)
class LabelMap:
    """A label map with its seed: ``target(sample)`` is the class index the lens must read for that problem."""

    name: str = "true"
    seed: int = 0

    def __post_init__(self) -> None:
        check_label_map(self.name)

    def target(self, s: Sample) -> int:
        return self.apply([s])[0].target_index

    def apply(self, samples: Sequence[Sample]) -> list[Sample]:
        """``samples`` with their targets attached (the ``true`` and ``permuted`` maps read the class itself)."""
        if self.name == "operand":
            table = operand_classes(self.seed)
            return [replace(s, target=table[s.a]) for s in samples]
        if self.name == "problem":
            return [replace(s, target=problem_class(self.seed, s)) for s in samples]
        return [replace(s, target=None) for s in samples]
