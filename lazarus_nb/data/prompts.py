"""Arithmetic prompts for the classifier-emergence experiment (docs/science.md "Data").

Two prompt families share one sampler:

* ``symbolic``: ``"7 * 8 = "``; the class is trivially visible in the operator token.
* ``words``: ``"What is 7 times 8? "``; several templates per class, for probing, because a probe on
  symbolic prompts is trivially perfect.

Samples are pure Python, seeded with :class:`random.Random`, so the same arguments give the same list on
every machine; the training batch order (:func:`balanced_batches`) uses numpy's seeded generator. Class-token
ids are not known here (they depend on the tokenizer); they are attached later through :meth:`Sample.to_dict`.

Evaluation sets (docs/science.md "Evaluation sets"): train and held-out never share a *problem* (:func:`problem`:
``a + b`` is ``b + a``), the snapshot set is :func:`balanced_subset` of the held-out set, and
:func:`heldout_fingerprint` lets a checkpoint prove its held-out set is rebuilt identically.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from lazarus_nb.errors import LazarusError

CLASSES: tuple[str, ...] = ("multiply", "add", "subtract", "divide")
"""The four operation classes; the position in this tuple is the class index."""


SYMBOLS: dict[str, str] = {"multiply": "*", "add": "+", "subtract": "-", "divide": "/"}
"""Operator symbol of each class in the symbolic prompt family."""


FAMILIES: tuple[str, ...] = ("symbolic", "words")
"""Prompt families; ``symbolic`` is the training/evaluation family, ``words`` is for probing and for the
cross-format transfer check (:func:`word_forms`); training never sees a word prompt."""


# Word templates, four or more per class. Why several: a probe should not be able to read the class off
# one fixed surface token, so each class mixes phrasings, and some frames ("What is the ... of {a} and
# {b}?") are shared across classes so that only the operation word differs. All prompts end with a space,
# like the symbolic family, so the answer text is always plain str(result) and the last prompt token has
# the same nature in both families.
WORD_TEMPLATES: dict[str, tuple[str, ...]] = {
    "multiply": (
        "What is {a} times {b}? ",
        "What do you get when you multiply {a} by {b}? ",
        "What is the product of {a} and {b}? ",
        "{a} multiplied by {b} is ",
    ),
    "add": (
        "What is {a} plus {b}? ",
        "What is the sum of {a} and {b}? ",
        "Add {a} and {b}. The result is ",
        "{a} added to {b} is ",
    ),
    "subtract": (
        "What is {a} minus {b}? ",
        "What is the difference between {a} and {b}? ",
        "Take {b} away from {a}. What is left? ",
        "Subtract {b} from {a}. The result is ",
    ),
    "divide": (
        "What is {a} divided by {b}? ",
        "What is the quotient of {a} and {b}? ",
        "How many times does {b} go into {a}? ",
        "If you split {a} into {b} equal parts, each part is ",
    ),
}
"""Templates of the ``words`` family per class; ``{a}`` and ``{b}`` are the operands."""


@dataclass(frozen=True)
class Sample:
    """One arithmetic prompt with its answer and operation class."""

    prompt: str  # text fed to the model; symbolic: f"{a} {sym} {b} = " (trailing space)
    answer: str  # expected continuation: str(result), no leading space
    label: str  # operation class, one of CLASSES (the example record calls it `class`, a reserved word in Python)
    a: int  # first operand
    b: int  # second operand
    family: str = "symbolic"  # prompt family, one of FAMILIES
    # the class index the lens is trained to read for this problem, when a control label map says it is not the
    # operation's (data.labels: attached where a run builds its data); None = the operation class
    target: int | None = None

    def __post_init__(self) -> None:
        if self.label not in CLASSES:
            raise ValueError(f"Unknown class {self.label!r}; expected one of {CLASSES}.")
        if self.family not in FAMILIES:
            raise ValueError(f"Unknown prompt family {self.family!r}; expected one of {FAMILIES}.")

    @property
    def label_index(self) -> int:
        """Index of the class in :data:`CLASSES` (the probe's target)."""
        return CLASSES.index(self.label)

    @property
    def target_index(self) -> int:
        """Index of the class token the lens must read for this problem (docs/science.md "Control tasks"):
        :attr:`target` under a control label map, else the operation class."""
        return self.label_index if self.target is None else self.target

    def to_dict(self, class_tokens: dict[str, int] | None = None) -> dict:
        """The example record of docs/science.md "Data": prompt, answer, class, class_token, a, b, family.

        ``class_token`` is ``class_tokens[label]`` when a mapping is given, else ``None`` (ids depend on
        the tokenizer, which this module does not know).
        """
        if class_tokens is None:
            token = None
        elif self.label in class_tokens:
            token = class_tokens[self.label]
        else:
            raise KeyError(f"class_tokens has no id for class {self.label!r}.")
        return {
            "prompt": self.prompt,
            "answer": self.answer,
            "class": self.label,
            "class_token": token,
            "a": self.a,
            "b": self.b,
            "family": self.family,
        }


@dataclass
class OperandRanges:
    """Operand ranges per operation (docs/science.md "Data"); all bounds are inclusive."""

    add_mul_max: int = 50  # multiply and add: a, b in [1, add_mul_max]
    sub_max: int = 100  # subtract: a, b in [1, sub_max] with a > b (100 so that "89 - 34" is in range)
    div_max_divisor: int = 12  # divide: b in [1, div_max_divisor]
    div_max_quotient: int = 12  # divide: a = b * k, k in [1, div_max_quotient] (so division is exact)

    def __post_init__(self) -> None:
        for name in ("add_mul_max", "sub_max", "div_max_divisor", "div_max_quotient"):
            if getattr(self, name) < 1:
                raise ValueError(f"OperandRanges.{name} must be at least 1, got {getattr(self, name)}.")
        if self.sub_max < 2:
            # With a > b >= 1 the smallest subtraction is 2 - 1.
            raise ValueError(f"OperandRanges.sub_max must be at least 2 (a > b >= 1), got {self.sub_max}.")


def _result(a: int, label: str, b: int) -> int:
    """Exact integer result of ``a op b``; division must be exact."""
    if label == "multiply":
        return a * b
    if label == "add":
        return a + b
    if label == "subtract":
        return a - b
    if label == "divide":
        if b == 0 or a % b:
            raise ValueError(f"Division {a} / {b} is not exact; a must be a nonzero multiple of b.")
        return a // b
    raise ValueError(f"Unknown class {label!r}; expected one of {CLASSES}.")


def make_sample(a: int, label: str, b: int, family: str = "symbolic", template: int = 0) -> Sample:
    """Build one sample; ``template`` indexes :data:`WORD_TEMPLATES` (the symbolic family has only 0)."""
    answer = str(_result(a, label, b))
    if family == "symbolic":
        templates: tuple[str, ...] = (f"{{a}} {SYMBOLS[label]} {{b}} = ",)
    elif family == "words":
        templates = WORD_TEMPLATES[label]
    else:
        raise ValueError(f"Unknown prompt family {family!r}; expected one of {FAMILIES}.")
    if not 0 <= template < len(templates):
        raise ValueError(f"Template {template} does not exist; {family} {label} has {len(templates)}.")
    return Sample(templates[template].format(a=a, b=b), answer, label, a, b, family)


def triple(s: Sample) -> tuple[int, str, int]:
    """The ``(a, label, b)`` identity of a sample."""
    return (s.a, s.label, s.b)


def distinct(samples: Sequence[Sample]) -> list[Sample]:
    """``samples`` with each ``(a, label, b)`` once (the first occurrence), in order: the training set cycles through
    its problems when it asks for more than there are (docs/science.md "Data")."""
    return list({triple(s): s for s in samples}.values())


COMMUTATIVE: tuple[str, ...] = ("multiply", "add")
"""Operations whose ``a op b`` and ``b op a`` are one problem (docs/science.md "Evaluation sets")."""


def problem(t: tuple[int, str, int]) -> tuple[int, str, int]:
    """The problem a triple asks: ``(min, op, max)`` for commutative operations, the triple itself otherwise.
    Train/held-out disjointness is defined on it, so ``3 + 4`` in training never answers ``4 + 3`` held out."""
    a, label, b = t
    return (min(a, b), label, max(a, b)) if label in COMMUTATIVE else (a, label, b)


CANONICAL: tuple[Sample, ...] = tuple(
    make_sample(a, label, b)
    for a, label, b in [
        (7, "multiply", 8),
        (12, "multiply", 5),
        (23, "add", 45),
        (17, "add", 38),
        (50, "subtract", 23),
        (89, "subtract", 34),
        (48, "divide", 6),
        (81, "divide", 9),
    ]
)
"""The eight canonical prompts of the original tool, always reported, in the original tool's order."""


def all_triples(label: str, ranges: OperandRanges) -> list[tuple[int, int]]:
    """Every valid ``(a, b)`` pair for one operation under ``ranges``, in a fixed sorted order."""
    if label in ("multiply", "add"):
        n = ranges.add_mul_max
        return [(a, b) for a in range(1, n + 1) for b in range(1, n + 1)]
    if label == "subtract":
        return [(a, b) for a in range(2, ranges.sub_max + 1) for b in range(1, a)]
    if label == "divide":
        # (b, k) -> (b * k, b) is injective, so these pairs are distinct.
        pairs = [(b * k, b) for b in range(1, ranges.div_max_divisor + 1)
                 for k in range(1, ranges.div_max_quotient + 1)]
        return sorted(pairs)
    raise ValueError(f"Unknown class {label!r}; expected one of {CLASSES}.")


def _class_counts(n: int) -> dict[str, int]:
    """``n // 4`` per class, the remainder to the first classes in CLASSES order."""
    if n < 0:
        raise ValueError(f"Number of samples must be non-negative, got {n}.")
    q, r = divmod(n, len(CLASSES))
    return {label: q + (i < r) for i, label in enumerate(CLASSES)}


def _draw(
    n: int,
    rng: random.Random,
    ranges: OperandRanges,
    exclude: set[tuple[int, str, int]],
    family: str,
    repeat: bool = False,
) -> list[Sample]:
    """Balanced draw without replacement from one RNG (shared so split() can chain draws); ``exclude`` holds
    problems (see :func:`problem`).

    With ``repeat``, a class whose pool is too small is drawn whole, then again, until it has its count
    (every distinct problem appears before any appears twice)."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown prompt family {family!r}; expected one of {FAMILIES}.")
    counts = _class_counts(n)
    # Check every class before drawing anything, so an impossible request fails without side effects.
    pools = {}
    for label in CLASSES:
        pools[label] = [(a, b) for a, b in all_triples(label, ranges) if problem((a, label, b)) not in exclude]
        if counts[label] > len(pools[label]) and not (repeat and pools[label]):
            raise ValueError(
                f"Cannot draw {counts[label]} distinct {label!r} samples: at most {len(pools[label])} exist "
                f"for these operand ranges (after exclusions)."
            )
    samples = []
    for label in CLASSES:
        drawn: list[tuple[int, int]] = []
        while len(drawn) < counts[label]:
            drawn += rng.sample(pools[label], min(counts[label] - len(drawn), len(pools[label])))
        for a, b in drawn:
            template = rng.randrange(len(WORD_TEMPLATES[label])) if family == "words" else 0
            samples.append(make_sample(a, label, b, family, template))
    # Shuffle so classes are interleaved (batches and CV folds should not see one class at a time).
    rng.shuffle(samples)
    return samples


def generate(
    n: int,
    seed: int = 0,
    ranges: OperandRanges | None = None,
    exclude: Iterable[tuple[int, str, int]] = (),
    family: str = "symbolic",
) -> list[Sample]:
    """``n`` class-balanced samples, distinct by ``(a, label, b)``, reproducible from ``seed``.

    Each class gets ``n // 4`` samples, the remainder going to the first classes in :data:`CLASSES` order.
    Operands are drawn without replacement from :func:`all_triples` minus the problems of ``exclude``
    (``(a, label, b)`` triples; excluding ``3 + 4`` also excludes ``4 + 3``); the result is shuffled. Raises
    ``ValueError`` if a class has fewer valid pairs than asked.
    """
    return _draw(n, random.Random(seed), ranges or OperandRanges(), {problem(t) for t in exclude}, family)


def train_heldout_split(
    n_train: int, n_heldout: int, seed: int = 0, ranges: OperandRanges | None = None
) -> tuple[list[Sample], list[Sample]]:
    """Disjoint, class-balanced ``(train, heldout)`` symbolic sets.

    No problem is in both (:func:`problem`: ``a + b`` and ``b + a`` are one problem, so are ``a * b`` and
    ``b * a``). The :data:`CANONICAL` problems are excluded from both sets, so results on the canonical prompts
    are a generalisation claim, not recall of training data. The held-out set is drawn first, so it does not
    change when only ``n_train`` changes.

    Held-out problems are distinct. Training problems repeat only where a class has fewer distinct problems
    than asked for: with default ranges divide has 144 (the original's default of 800 samples asks 200).
    """
    ranges = ranges or OperandRanges()
    rng = random.Random(seed)
    excluded = {problem(triple(s)) for s in CANONICAL}
    heldout = _draw(n_heldout, rng, ranges, excluded, "symbolic")
    train = _draw(n_train, rng, ranges, excluded | {problem(triple(s)) for s in heldout}, "symbolic", repeat=True)
    return train, heldout


def balanced_subset(samples: Sequence[Sample], n: int) -> list[Sample]:
    """The first ``n // 4`` samples of each class, in the order of ``samples``: the fixed, class-balanced
    snapshot set of the held-out set (docs/science.md "Evaluation sets"). ``n`` must be a multiple of 4 and each class
    must have ``n // 4`` samples (ValueError otherwise): a balanced set is promised, never a lopsided one."""
    k, rest = divmod(n, len(CLASSES))
    if n <= 0 or rest:
        raise ValueError(f"a class-balanced subset needs a positive multiple of {len(CLASSES)} samples, got {n}")
    taken: dict[str, list[Sample]] = {c: [] for c in CLASSES}
    out = []
    for s in samples:
        if len(taken[s.label]) < k:
            taken[s.label].append(s)
            out.append(s)
    short = [c for c in CLASSES if len(taken[c]) < k]
    if short:
        raise ValueError(f"cannot take {k} samples per class: too few {', '.join(repr(c) for c in short)} samples")
    return out


def heldout_fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 of the ordered ``(a, op, b)`` triples: equal exactly when a rebuilt held-out set is the same
    problems in the same order (the order fixes the snapshot subset)."""
    text = "\n".join(f"{s.a} {s.label} {s.b}" for s in samples)
    return hashlib.sha256(text.encode()).hexdigest()


def balanced_batches(
    labels: Sequence[int] | Sequence[str],
    lengths: Sequence[int],
    batch_size: int,
    steps: int,
    seed: int,
    pool: int = 16,
) -> list[np.ndarray]:
    """Sample indices for ``steps`` batches: seeded, length-bucketed, and class-balanced.

    Each epoch every class is reshuffled and the classes are interleaved in proportion, then cut into pools
    of ``pool`` batches (so every pool holds the classes in proportion). Within a pool each class is sorted by
    ``lengths`` and the classes are interleaved again by length rank, so a batch takes the j-th shortest
    slice of every class: similar lengths (little padding) without the class skew of a global length sort,
    where short-answer classes would fill whole batches. Batches are shuffled within the pool. A pure function
    of its arguments, so a resumed run continues with exactly the batches of the uninterrupted one."""
    rng = np.random.default_rng(seed)
    labels_np, lengths_np = np.asarray(labels), np.asarray(lengths)
    n = len(labels_np)
    if n == 0 or batch_size <= 0 or len(lengths_np) != n:
        raise ValueError(f"need samples, a positive batch size and one length per sample (n={n}, "
                         f"batch_size={batch_size}, lengths={len(lengths_np)})")
    classes = [np.flatnonzero(labels_np == c) for c in np.unique(labels_np)]

    def interleave(groups: list[np.ndarray]) -> np.ndarray:
        # position of each member within its group as a fraction, ties between groups broken at random
        idx = np.concatenate(groups)
        frac = np.concatenate([(np.arange(len(g)) + 0.5) / len(g) for g in groups])
        return idx[np.lexsort((rng.random(len(idx)), frac))]

    batches: list[np.ndarray] = []
    while len(batches) < steps:
        order = interleave([rng.permutation(g) for g in classes])
        for start in range(0, n, pool * batch_size):
            chunk = order[start : start + pool * batch_size]
            by_class = [chunk[labels_np[chunk] == labels_np[g[0]]] for g in classes]
            by_length = [g[np.argsort(lengths_np[g], kind="stable")] for g in by_class if len(g)]
            chunk = interleave(by_length)
            cut = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            batches += [cut[i] for i in rng.permutation(len(cut))]
    return batches[:steps]


def word_prompts(n: int, seed: int = 0, ranges: OperandRanges | None = None) -> list[Sample]:
    """``n`` class-balanced prompts of the ``words`` family (for probing), template chosen per sample.

    Same sampling as :func:`generate`; the answer is the same arithmetic result as the symbolic prompt.
    """
    return generate(n, seed, ranges, family="words")


def word_forms(samples: Sequence[Sample]) -> list[Sample]:
    """The same problems as ``words``-family prompts: the cross-format transfer set of an evaluation.

    Built from the held-out set, these problems are disjoint from training by construction, and they are
    the very problems the symbolic numbers are measured on (a paired comparison). Training is symbolic only,
    so no word template is ever trained on. The i-th sample of each class takes template ``i mod 4``, so
    every template of a class is used equally; no randomness is involved."""
    seen: dict[str, int] = {c: 0 for c in CLASSES}
    out = []
    for s in samples:
        template = seen[s.label] % len(WORD_TEMPLATES[s.label])
        seen[s.label] += 1
        out.append(replace(make_sample(s.a, s.label, s.b, "words", template), target=s.target))
    return out


PROBE_PROMPTS = 100
"""Default size of a generated probe set (25 per class)."""


DEMO_PROBE_PROMPTS = 40
"""Probe prompts per family in the demo (10 per operation). The conclusion (the operation is linearly decodable at
every layer, far above the shuffled-label control) is the same as with 100 or 200 prompts; the accuracies are a
little lower and noisier (docs/results.md), and the probe step takes a fraction of the time."""


MIN_PROBE_PROMPTS = 2 * len(CLASSES)
"""Cross-validation needs at least two prompts per class."""


def check_probe_size(n: int) -> None:
    """The one rule on the size of a generated probe set (one sentence, before anything is drawn)."""
    if n < MIN_PROBE_PROMPTS:
        raise LazarusError(f"a probe needs at least {MIN_PROBE_PROMPTS} prompts (two per class for "
                           f"cross-validation), got {n}")


def probe_samples(family: str, n: int, seed: int = 0) -> list[Sample]:
    """``n`` generated prompts of one family for probing: "symbolic" (``7 * 8 = ``) or "words"."""
    if family not in FAMILIES:
        raise LazarusError(f"prompt set must be 'symbolic' or 'words', got '{family}'")
    check_probe_size(n)
    return generate(n, seed, family=family)


TERMINATORS: tuple[str, ...] = ("eos", "none")
"""What ends the answer target: the tokenizer's end-of-sequence token, or nothing (docs/science.md "Tokenising an
example")."""
