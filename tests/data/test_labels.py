"""Label maps: the control tasks' targets (docs/science.md "Control tasks")."""

from __future__ import annotations

from collections import Counter

import pytest

from lazarus_nb.data.labels import LABEL_MAPS, PERMUTED, LabelMap, operand_classes, problem_class, target_words
from lazarus_nb.data.prompts import CLASSES, OperandRanges, all_triples, make_sample, problem, triple
from lazarus_nb.errors import LazarusError
from lazarus_nb.train.config import TrainConfig


def test_operand_map_covers_every_first_operand_and_is_class_balanced():
    table = operand_classes(seed=0)
    values = {a for c in CLASSES for a, _ in all_triples(c, OperandRanges())}
    assert set(table) == values  # every first operand any operation draws
    counts = Counter(table.values())
    assert set(counts) == set(range(len(CLASSES)))
    assert max(counts.values()) - min(counts.values()) <= 1  # dealt round-robin
    assert operand_classes(seed=0) == table and operand_classes(seed=1) != table  # seeded


def test_operand_target_is_a_function_of_the_first_operand_only():
    train, heldout = TrainConfig(label_map="operand", seed=3).split()
    by_operand: dict[int, set[int]] = {}
    for s in train + heldout:
        by_operand.setdefault(s.a, set()).add(s.target_index)
    assert all(len(targets) == 1 for targets in by_operand.values())
    # ... and not the operation: problems sharing a first operand across operations share the target
    shared = [a for a in by_operand if len({s.label for s in train + heldout if s.a == a}) > 1]
    assert shared
    # not a relabelling of the operation: every operation spreads over several targets
    for c in CLASSES:
        assert len({s.target_index for s in train if s.label == c}) > 1


def test_problem_map_is_seeded_reproducible_and_keyed_on_the_problem():
    s, flipped = make_sample(3, "add", 4), make_sample(4, "add", 3)
    assert problem(triple(s)) == problem(triple(flipped))
    assert problem_class(5, s) == problem_class(5, flipped)  # a + b is b + a
    first = [x.target_index for x in TrainConfig(label_map="problem", seed=5).split()[0]]
    again = [x.target_index for x in TrainConfig(label_map="problem", seed=5).split()[0]]
    other = [x.target_index for x in TrainConfig(label_map="problem", seed=6, num_samples=800).split()[0]]
    assert first == again and first != other[: len(first)]
    counts = Counter(first)
    assert set(counts) == set(range(4)) and min(counts.values()) > 0.15 * len(first)  # four classes in use


def test_true_and_permuted_read_the_operation_and_only_the_words_differ():
    train, _ = TrainConfig(label_map="permuted").split()
    assert all(s.target_index == s.label_index for s in train)
    assert target_words("permuted") == tuple(PERMUTED[c] for c in CLASSES)
    assert target_words("operand") == target_words("problem") == target_words("true") == CLASSES


def test_split_attaches_targets_without_changing_the_problems():
    plain = TrainConfig(seed=2).split()
    for name in LABEL_MAPS:
        labelled = TrainConfig(seed=2, label_map=name).split()
        for a, b in zip(plain, labelled):
            assert [triple(x) for x in a] == [triple(x) for x in b]  # same problems, same order: matched runs


def test_word_forms_keep_the_targets():
    from lazarus_nb.data.prompts import word_forms

    _, heldout = TrainConfig(label_map="operand").split()
    words = word_forms(heldout)
    assert [w.target_index for w in words] == [s.target_index for s in heldout]
    assert LabelMap("operand").target(heldout[0]) == heldout[0].target_index


def test_unknown_label_map_is_one_sentence():
    with pytest.raises(LazarusError, match="label map must be one of true, permuted, operand, problem"):
        LabelMap("shuffled")
