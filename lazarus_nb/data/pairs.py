"""Prompt pairs for activation patching (docs/science.md "Activation patching"): two arithmetic prompts that differ
only in the operator, ``a OP1 b = `` (the source) and ``a OP2 b = `` (the target), both problems of the data rules
with integer answers.

* :func:`draw_pairs`: seeded pairs from a run's held-out problems, balanced over the 12 ordered operator pairs as far
  as each one's pool allows. A pair is held out for the run when neither of its two problems is a training problem
  (:func:`~lazarus_nb.data.prompts.problem`: ``3 + 4`` in training is ``4 + 3`` too) and at least one of them is a
  held-out problem.
* :func:`parse_pair`: a user's ``"SOURCE|TARGET"``, two arithmetic prompts. That they differ only in the operator
  (:func:`check_pair`) is checked after their token counts (``data.tokens.encode_pair``): equal counts are what
  position-by-position patching needs first.
* :func:`segments`: a prompt's parts in order (first operand, operator, space, second operand, ``=``, the final
  space), which ``data.tokens.token_segments`` maps onto its tokens, so pairs of different token layouts can be
  averaged position by position.

Pure Python: token ids depend on the tokenizer (``data.tokens.encode_pair`` checks equal token counts).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lazarus_nb.data.prompts import CLASSES, SYMBOLS, OperandRanges, Sample, all_triples, make_sample, problem, triple
from lazarus_nb.errors import LazarusError, SettingError

ORDERED: tuple[tuple[str, str], ...] = tuple((s, t) for s in CLASSES for t in CLASSES if s != t)
"""The 12 ordered (source, target) operation pairs, in class order."""


SEGMENTS: tuple[str, ...] = ("a", "op", "space", "b", "equals", "end")
"""The parts of a symbolic prompt ``f"{a} {sym} {b} = "``, in order: its :func:`segments` name them."""


@dataclass(frozen=True)
class Pair:
    """A source and a target prompt that differ only in the operator (``check_pair``)."""

    source: Sample
    target: Sample

    @property
    def name(self) -> str:
        """``"7 * 8 = -> 7 + 8 = "``: how text and figures name the pair."""
        return f"{self.source.prompt}-> {self.target.prompt}"


_ARITHMETIC = re.compile(r"(\d+) ([" + re.escape("".join(SYMBOLS.values())) + r"]) (\d+) = ")


def parse_prompt(text: str) -> Sample:
    """The problem a patching prompt asks: exactly ``"a OP b = "`` (its answer is scored), a problem of the data
    rules (operands from 1, a > b for subtract, exact division). One sentence otherwise."""
    match = _ARITHMETIC.fullmatch(text)
    if match is None:
        raise LazarusError(f"a patching prompt must be arithmetic 'a OP b = ' with OP one of "
                           f"{' '.join(SYMBOLS.values())} and the trailing space (its answer is scored), got {text!r}")
    a, b = int(match.group(1)), int(match.group(3))
    label = next(c for c, s in SYMBOLS.items() if s == match.group(2))
    # the data rules (docs/science.md "Data"): operands from 1, a > b for subtract (no negative answers), exact division
    broken = ("operands start at 1" if min(a, b) < 1 else "subtraction needs a > b" if label == "subtract" and a <= b
              else "division must be exact" if label == "divide" and a % b else None)
    if broken:
        raise LazarusError(f"{text!r} is not a problem of the data rules: {broken} (every answer a positive integer)")
    return make_sample(a, label, b)


def check_pair(pair: Pair) -> None:
    """Refuse (one sentence) a pair that is not the same operands under two operators."""
    s, t = pair.source, pair.target
    if (s.a, s.b) != (t.a, t.b) or s.label == t.label:
        what = "operands" if (s.a, s.b) != (t.a, t.b) else "nothing (the same operator)"
        raise LazarusError(f"patching pairs must differ only in the operator: {s.prompt!r} and {t.prompt!r} differ "
                           f"in {what}")


def parse_pair(text: str) -> Pair:
    """``"SOURCE|TARGET"`` (e.g. ``"7 * 8 = |7 + 8 = "``), both arithmetic prompts (``check_pair`` is
    ``data.tokens.encode_pair``'s, after the token counts)."""
    sides = text.split("|")
    if len(sides) != 2:
        raise LazarusError(f"a patching pair is two prompts 'SOURCE|TARGET', e.g. \"7 * 8 = |7 + 8 = \", got {text!r}")
    return Pair(parse_prompt(sides[0]), parse_prompt(sides[1]))


def _pools(heldout: Sequence[Sample], train: Sequence[Sample],
           ranges: OperandRanges) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Per ordered operation pair, the held-out operands (a, b) in a fixed order (see the module doc)."""
    valid = {label: set(all_triples(label, ranges)) for label in CLASSES}
    trained = {problem(triple(s)) for s in train}
    held = sorted({(s.a, s.b, s.label) for s in heldout})
    pools = {}
    for src, tgt in ORDERED:
        pools[(src, tgt)] = [(a, b) for a, b, label in held if label in (src, tgt)
                             and all((a, b) in valid[op] and problem((a, op, b)) not in trained for op in (src, tgt))]
        pools[(src, tgt)] = list(dict.fromkeys(pools[(src, tgt)]))  # both problems held out: once
    return pools


def available_pairs(heldout: Sequence[Sample], train: Sequence[Sample], ranges: OperandRanges | None = None) -> int:
    """How many distinct pairs :func:`draw_pairs` can draw from these sets."""
    return sum(len(p) for p in _pools(heldout, train, ranges or OperandRanges()).values())


def draw_pairs(heldout: Sequence[Sample], train: Sequence[Sample], n: int, seed: int = 0,
               ranges: OperandRanges | None = None) -> list[Pair]:
    """``n`` distinct held-out pairs, seeded, balanced over the ordered operation pairs: round by round one more of
    each ordered pair (in a seeded order) while its pool lasts. ``n`` out of range is one sentence on ``num_pairs``."""
    pools = _pools(heldout, train, ranges or OperandRanges())
    total = sum(len(p) for p in pools.values())
    if not 1 <= n <= total:
        raise SettingError("num_pairs", f"{{field}} must be between 1 and {total} (the pairs of held-out problems that "
                                        f"differ only in the operator), got {n}")
    rng = random.Random(seed)
    shuffled = {k: rng.sample(v, len(v)) for k, v in pools.items()}
    order = rng.sample(ORDERED, len(ORDERED))
    out: list[Pair] = []
    depth = 0
    while len(out) < n:
        for src, tgt in order:
            if depth < len(shuffled[(src, tgt)]) and len(out) < n:
                a, b = shuffled[(src, tgt)][depth]
                out.append(Pair(make_sample(a, src, b), make_sample(a, tgt, b)))
        depth += 1
    return out


def segments(sample: Sample) -> list[tuple[str, str]]:
    """``[(segment name, its text), ...]`` of a symbolic prompt, in order; joined they are the prompt."""
    parts = [str(sample.a), f" {SYMBOLS[sample.label]}", " ", str(sample.b), " =", " "]
    assert "".join(parts) == sample.prompt, sample.prompt
    return list(zip(SEGMENTS, parts))
