"""Tests for lazarus_nb.data.prompts against independent expectations (docs/science.md "Data")."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from lazarus_nb.data.prompts import (
    CANONICAL,
    CLASSES,
    OperandRanges,
    Sample,
    all_triples,
    balanced_batches,
    balanced_subset,
    generate,
    heldout_fingerprint,
    make_sample,
    problem,
    train_heldout_split,
    triple,
    word_prompts,
)

# Written out by hand from docs/science.md "Canonical prompts", not derived from the module.
EXPECTED_CANONICAL = [
    ("7 * 8 = ", "56", "multiply"),
    ("12 * 5 = ", "60", "multiply"),
    ("23 + 45 = ", "68", "add"),
    ("17 + 38 = ", "55", "add"),
    ("50 - 23 = ", "27", "subtract"),
    ("89 - 34 = ", "55", "subtract"),
    ("48 / 6 = ", "8", "divide"),
    ("81 / 9 = ", "9", "divide"),
]
OPS = {"multiply": lambda a, b: a * b, "add": lambda a, b: a + b,
       "subtract": lambda a, b: a - b, "divide": lambda a, b: a / b}


def test_classes_order_and_canonical_prompts():
    assert CLASSES == ("multiply", "add", "subtract", "divide")
    assert [(s.prompt, s.answer, s.label) for s in CANONICAL] == EXPECTED_CANONICAL
    assert [s.label_index for s in CANONICAL] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_symbolic_prompt_format_and_arithmetic():
    samples = generate(400, seed=3)
    for s in samples:
        assert re.fullmatch(r"\d+ [*+\-/] \d+ = ", s.prompt), s.prompt
        assert s.prompt == f"{s.a} {'*+-/'[s.label_index]} {s.b} = "
        value = eval(s.prompt.removesuffix("= "))  # independent check of the answer text
        assert float(value).is_integer() and int(value) == int(s.answer), s


def test_to_dict_keys_and_class_token():
    s = make_sample(7, "multiply", 8)
    assert s.to_dict() == {"prompt": "7 * 8 = ", "answer": "56", "class": "multiply", "class_token": None,
                           "a": 7, "b": 8, "family": "symbolic"}
    assert s.to_dict({"multiply": 17109, "add": 1})["class_token"] == 17109
    with pytest.raises(KeyError):
        s.to_dict({"add": 1})


def test_invalid_inputs_rejected():
    with pytest.raises(ValueError, match="not exact"):
        make_sample(7, "divide", 2)
    with pytest.raises(ValueError):
        Sample("x", "1", "power", 1, 1)
    with pytest.raises(ValueError, match="sub_max"):
        OperandRanges(sub_max=1)
    with pytest.raises(ValueError, match="div_max_divisor"):
        OperandRanges(div_max_divisor=0)


def _check_ranges(samples: list[Sample], r: OperandRanges) -> None:
    for s in samples:
        if s.label in ("multiply", "add"):
            assert 1 <= s.a <= r.add_mul_max and 1 <= s.b <= r.add_mul_max, s
        elif s.label == "subtract":
            assert 1 <= s.b < s.a <= r.sub_max, s
        else:
            assert 1 <= s.b <= r.div_max_divisor and s.a % s.b == 0, s
            assert 1 <= s.a // s.b <= r.div_max_quotient, s


@pytest.mark.parametrize("ranges", [OperandRanges(), OperandRanges(5, 7, 3, 4)])
def test_ranges_respected(ranges):
    samples = generate(40, seed=1, ranges=ranges)
    _check_ranges(samples, ranges)
    # Custom ranges really are used: with the small ranges nothing exceeds 7.
    if ranges.sub_max == 7:
        assert max(max(s.a, s.b) for s in samples) <= 12


def test_all_triples_counts():
    r = OperandRanges()
    assert len(all_triples("multiply", r)) == 50 * 50
    assert len(all_triples("subtract", r)) == 100 * 99 // 2
    assert len(all_triples("divide", r)) == 12 * 12
    assert all(a > b for a, b in all_triples("subtract", r))


def test_seeded_reproducibility():
    assert generate(50, seed=7) == generate(50, seed=7)
    assert generate(50, seed=7) != generate(50, seed=8)
    assert word_prompts(50, seed=7) == word_prompts(50, seed=7)


def test_balance_and_no_duplicates():
    counts = Counter(s.label for s in generate(10))
    assert [counts[c] for c in CLASSES] == [3, 3, 2, 2]
    samples = generate(400, seed=2)
    assert Counter(s.label for s in samples) == {c: 100 for c in CLASSES}
    assert len({triple(s) for s in samples}) == 400
    # Interleaved, not grouped by class.
    assert [s.label for s in samples[:100]] != ["multiply"] * 100


def test_exclude():
    excluded = [(a, "divide", b) for a, b in all_triples("divide", OperandRanges())[:140]]
    samples = generate(16, exclude=excluded)
    assert not {triple(s) for s in samples} & set(excluded)
    assert sorted(triple(s) for s in samples if s.label == "divide") == sorted(
        (a, "divide", b) for a, b in all_triples("divide", OperandRanges())[140:])


def same_problem(x: tuple[int, str, int], y: tuple[int, str, int]) -> bool:
    """Written from docs/science.md "Evaluation sets", independently of ``problem``: a+b is b+a, a*b is b*a,
    nothing else commutes."""
    (a, op, b), (c, op2, d) = x, y
    return op == op2 and ((a, b) == (c, d) or (op in ("add", "multiply") and (a, b) == (d, c)))


def test_problem_identifies_commuted_twins():
    assert problem((4, "add", 3)) == problem((3, "add", 4)) == (3, "add", 4)
    assert problem((8, "multiply", 7)) == problem((7, "multiply", 8))
    assert problem((9, "subtract", 4)) != problem((4, "subtract", 9))
    assert problem((12, "divide", 4)) == (12, "divide", 4)
    pairs = [(a, op, b) for op in CLASSES for a in range(1, 5) for b in range(1, 5)]
    for x in pairs:
        for y in pairs:
            assert (problem(x) == problem(y)) == same_problem(x, y), (x, y)


def test_exclude_removes_the_commuted_twin():
    tiny = OperandRanges(add_mul_max=2)
    samples = generate(8, ranges=tiny, exclude=[(1, "add", 2)])
    assert sorted(triple(s) for s in samples if s.label == "add") == [(1, "add", 1), (2, "add", 2)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_commuted_twin_straddles_the_split(seed):
    train, heldout = train_heldout_split(800, 100, seed)  # the default sizes
    for h in heldout:
        assert not any(same_problem(triple(h), triple(t)) for t in train), h
    for c in CANONICAL:  # the canonical problems are in neither set, in either order
        assert not any(same_problem(triple(c), triple(s)) for s in train + heldout), c


def test_train_heldout_split_disjoint():
    train, heldout = train_heldout_split(300, 100, seed=5)
    assert len(train) == 300 and len(heldout) == 100
    train_t, held_t = {triple(s) for s in train}, {triple(s) for s in heldout}
    assert len(train_t) == 300 and len(held_t) == 100
    assert not train_t & held_t
    canonical = {(7, "multiply", 8), (12, "multiply", 5), (23, "add", 45), (17, "add", 38),
                 (50, "subtract", 23), (89, "subtract", 34), (48, "divide", 6), (81, "divide", 9)}
    assert not canonical & (train_t | held_t)
    twins = {(b, op, a) for a, op, b in canonical if op in ("add", "multiply")}
    assert not twins & (train_t | held_t)
    assert Counter(s.label for s in heldout) == {c: 25 for c in CLASSES}
    # The held-out set does not move when only n_train changes.
    assert train_heldout_split(20, 100, seed=5)[1] == heldout


def test_split_nearly_exhausts_divide():
    # 144 divide pairs minus 2 canonical = 142; 4 * 142 = 568 samples use every one of them.
    train, heldout = train_heldout_split(468, 100)
    assert sum(s.label == "divide" for s in train + heldout) == 142
    assert len({triple(s) for s in train}) == 468  # still all distinct


def test_default_800_training_samples_repeat_only_divide():
    # The original's default (800 samples, 200 per class) needs more divide problems than exist (142 - 25
    # held out = 117): training repeats those, every distinct one before any twice, never a held-out one.
    train, heldout = train_heldout_split(800, 100)
    assert Counter(s.label for s in train) == {c: 200 for c in CLASSES}
    divide = Counter(triple(s) for s in train if s.label == "divide")
    assert len(divide) == 117 and set(divide.values()) == {1, 2}
    assert all(len({triple(s) for s in train if s.label == c}) == 200 for c in CLASSES[:3])
    assert not {triple(s) for s in train} & {triple(s) for s in heldout}
    with pytest.raises(ValueError, match="divide"):
        train_heldout_split(10, 600)  # held-out problems are never repeated


def test_too_many_samples_raises_readable_error():
    tiny = OperandRanges(div_max_divisor=2, div_max_quotient=2)  # only 4 divide pairs
    assert len(generate(16, ranges=tiny)) == 16
    with pytest.raises(ValueError, match=r"5 distinct 'divide' samples: at most 4 exist"):
        generate(20, ranges=tiny)


def test_word_prompts():
    samples = word_prompts(200, seed=0)
    assert Counter(s.label for s in samples) == {c: 50 for c in CLASSES}
    skeletons: dict[str, set[str]] = {c: set() for c in CLASSES}
    for s in samples:
        assert s.family == "words"
        assert int(s.answer) == OPS[s.label](s.a, s.b)  # independent arithmetic
        assert str(s.a) in s.prompt and str(s.b) in s.prompt
        assert not set("*+/=") & set(s.prompt), s.prompt
        skeletons[s.label].add(re.sub(r"\d+", "#", s.prompt))
    assert all(len(v) >= 4 for v in skeletons.values()), skeletons
    # No single word is a perfect class indicator (in every prompt of one class and in no other).
    words: dict[str, list[set[str]]] = {c: [] for c in CLASSES}
    for s in samples:
        words[s.label].append(set(re.findall(r"[a-z]+", s.prompt.lower())))
    for c in CLASSES:
        always = set.intersection(*words[c])
        elsewhere = set().union(*(w for d in CLASSES if d != c for w in words[d]))
        assert not always - elsewhere, (c, always - elsewhere)


# ---------------------------------------------------------------- evaluation sets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_snapshot_subset_of_32_is_8_per_class(seed):
    _, heldout = train_heldout_split(800, 100, seed)
    snap = balanced_subset(heldout, 32)
    assert Counter(s.label for s in snap) == {c: 8 for c in CLASSES}
    # the first 8 of each class in held-out order, order kept (deterministic, and still interleaved)
    for c in CLASSES:
        assert [s for s in snap if s.label == c] == [s for s in heldout if s.label == c][:8]
    assert [heldout.index(s) for s in snap] == sorted(heldout.index(s) for s in snap)
    assert balanced_subset(train_heldout_split(800, 100, seed)[1], 32) == snap


def test_balanced_subset_refuses_what_it_cannot_balance():
    _, heldout = train_heldout_split(40, 16, seed=0)  # 4 per class
    assert len(balanced_subset(heldout, 16)) == 16
    with pytest.raises(ValueError, match="multiple of 4"):
        balanced_subset(heldout, 10)
    with pytest.raises(ValueError, match="too few"):
        balanced_subset(heldout, 20)


def test_heldout_fingerprint_changes_with_any_triple_or_order():
    _, heldout = train_heldout_split(800, 100, seed=0)
    fp = heldout_fingerprint(heldout)
    assert len(fp) == 64 and int(fp, 16) >= 0  # a sha256 hex digest
    assert heldout_fingerprint(train_heldout_split(20, 100, seed=0)[1]) == fp  # rebuilt identically
    changed = [*heldout[:5], make_sample(heldout[5].a + 1, "add", heldout[5].b), *heldout[6:]]
    assert heldout_fingerprint(changed) != fp
    assert heldout_fingerprint([heldout[1], heldout[0], *heldout[2:]]) != fp
    assert heldout_fingerprint(train_heldout_split(800, 100, seed=1)[1]) != fp


# ---------------------------------------------------------------- training batches


def plain_shuffle(n: int, batch_size: int, steps: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < steps:
        order = rng.permutation(n)
        out += [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return out[:steps]


def global_length_buckets(lengths: np.ndarray, batch_size: int, steps: int, seed: int, pool: int = 16):
    """A global-shuffle schedule, the reference the per-class schedule is compared with: pools of a plain shuffle,
    each sorted by length, cut into batches."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < steps:
        order = rng.permutation(len(lengths))
        for start in range(0, len(lengths), pool * batch_size):
            chunk = order[start : start + pool * batch_size]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            out += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return out[:steps]


def majority_share(batches: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean over batches of the share of the batch's most common class (0.25 = perfectly balanced)."""
    return float(np.mean([np.bincount(labels[b]).max() / len(b) for b in batches]))


def padded_over_real(batches: list[np.ndarray], lengths: np.ndarray) -> float:
    return sum(len(b) * lengths[b].max() for b in batches) / sum(lengths[b].sum() for b in batches)


def default_training_set(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels, lengths) of the default training set; the length is the character count, which orders the
    examples as their token count does (answer length is what differs between classes)."""
    train, _ = train_heldout_split(800, 100, seed)
    return np.array([s.label_index for s in train]), np.array([len(s.prompt) + len(s.answer) for s in train])


@pytest.mark.parametrize("seed", [0, 1])
def test_balanced_batches_are_class_balanced_and_still_bucketed(seed):
    labels, lengths = default_training_set(seed)
    steps, size = 500, 8
    balanced = balanced_batches(labels, lengths, size, steps, seed)
    shuffled, bucketed = plain_shuffle(800, size, steps, seed), global_length_buckets(lengths, size, steps, seed)
    # measured class balance per batch: exactly 2 of each class in every batch of 8
    assert majority_share(balanced, labels) == 0.25
    assert all(np.bincount(labels[b], minlength=4).tolist() == [2, 2, 2, 2] for b in balanced)
    assert 0.40 < majority_share(shuffled, labels) < 0.48  # chance imbalance of a plain shuffle
    assert majority_share(bucketed, labels) > 0.55  # the skew a global length sort brings
    # and still less padding than a plain shuffle
    assert padded_over_real(balanced, lengths) < padded_over_real(shuffled, lengths) - 0.01


def test_balanced_batches_cover_every_sample_once_per_epoch_and_are_reproducible():
    labels = np.array([0] * 13 + [1] * 9 + [2] * 7 + [3] * 3)  # unequal classes, 32 samples
    lengths = np.arange(32) % 7
    batches = balanced_batches(labels, lengths, batch_size=5, steps=21, seed=3, pool=2)
    per_epoch = 7  # ceil(32 / 5): pools of 10, the last batch of an epoch may be short
    for e in range(3):
        epoch = np.concatenate(batches[e * per_epoch : (e + 1) * per_epoch])
        assert sorted(epoch.tolist()) == list(range(32)), e
    assert all(np.array_equal(a, b) for a, b in zip(batches, balanced_batches(labels, lengths, 5, 21, 3, pool=2)))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, balanced_batches(labels, lengths, 5, 21, 4, pool=2)))
    assert len(balanced_batches(labels, lengths, 5, 3, 3, pool=2)) == 3
    # no class is over-represented beyond its share: at most ceil(share * 5) + 1 of a class in a batch of 5
    for b in batches:
        counts = np.bincount(labels[b], minlength=4)
        assert (counts <= np.ceil(np.bincount(labels, minlength=4) / 32 * len(b)) + 1).all(), counts
    with pytest.raises(ValueError):
        balanced_batches(labels, lengths[:5], 5, 3, 0)
