"""One spelling for probabilities, accuracies and tokens (show/format.py), and the CLI's tables using it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lazarus_nb.results.lens import LayerRead, LensReport, PromptRead, TargetRead
from lazarus_nb.show import text as report
from lazarus_nb.show.format import clip, pct, prob, token
from lazarus_nb.train.config import READABLE


@pytest.mark.parametrize("p, expected", [
    (1.0, "100.0%"),
    (0.991, "99.1%"),
    (0.41, "41.0%"),
    (0.03, "3.0%"),
    (0.01, "1.0%"),  # 1%: still one decimal
    (0.00999, "1.0%"),  # rounds up to 1%: written as 1% is
    (0.0049, "0.49%"),  # below 1%: two significant digits
    (0.00049, "0.049%"),
    (0.00012, "0.012%"),
    (1e-4, "0.010%"),  # the threshold itself is still a percentage, trailing zero kept
    (9.9e-5, "9.9e-05"),  # below 0.01%: the probability in scientific notation, never a percent of it
    (3.37e-11, "3.4e-11"),
    (3.37e-13, "3.4e-13"),
    (0, "0%"),
    (0.0, "0%"),
    (None, "n/a"),
    (float("nan"), "n/a"),
    (float("inf"), "n/a"),
    (np.float32(0.25), "25.0%"),
])
def test_prob(p, expected):
    assert prob(p) == expected


@pytest.mark.parametrize("p, digits, expected", [
    (0.875, 1, "87.5%"),
    (1.0, 1, "100.0%"),
    (0.0, 1, "0.0%"),
    (1 / 3, 0, "33%"),
    (None, 1, "n/a"),
    (float("nan"), 0, "n/a"),
])
def test_pct_is_for_accuracies(p, digits, expected):
    assert pct(p, digits) == expected


@pytest.mark.parametrize("tok, expected", [
    (" 56", "␣56"),
    ("56", "56"),
    ("\n", "↵"),
    ("a b\nc", "a␣b↵c"),
    ("\t", "\\t"),
    ("\xa0", "\\xa0"),  # a no-break space is not a space: its escape, not ␣
    ("x\u200by", "x\\u200by"),
    ("\r\n", "\\r↵"),
    ("中", "中"),
    ("", ""),
])
def test_token_makes_invisible_characters_visible(tok, expected):
    assert token(tok) == expected


def test_token_cuts_at_the_limit_never_inside_an_escape():
    assert token("x" * 14) == "x" * 14  # exactly the default limit: whole
    assert token("x" * 15) == "x" * 13 + "…"
    assert token(" multiplication") == "␣multiplicati…"
    assert token(" multiplication", 9) == "␣multipl…"
    assert token("\t" * 10) == "\\t" * 6 + "…"  # 13 characters fit, so six whole escapes and the mark
    assert token("x" * 40, None) == "x" * 40
    assert clip("'7 * 8 = '", 6) == "'7 * …" and clip("'7'", 6) == "'7'"


def _report() -> LensReport:
    top = [(" multiply", 0.41), ("\n", 0.0004), ("\xa0", 3.37e-13)]
    return LensReport([5], {"multiply": 9}, [PromptRead("7 * 8 = ", [
        LayerRead(5, {"multiply": TargetRead(9, 0.41, 0)}, top)])], {"multiply": {"top_count": 1, "n": 1}})


def test_cli_lens_table_writes_probabilities_and_tokens_the_one_way():
    lines = report.lens_tables(_report(), 3, lambda ids: " multiply")
    assert lines[1] == "Target tokens: multiply -> 9 (␣multiply)"
    row = next(line for line in lines if line.startswith("  L5"))
    assert row == "  L5    41.0% #1          ␣multiply 41.0%, ↵ 0.040%, \\xa0 3.4e-13"


def test_metrics_change_and_readable_line():
    def ev(correct: int, top1: float, restricted: float) -> SimpleNamespace:
        return SimpleNamespace(canonical_correct=correct, canonical=[None] * 8, heldout_top1_accuracy=top1,
                               heldout_restricted_accuracy=restricted)

    assert report.metrics_change(ev(3, 0.125, 0.25), ev(8, 0.875, 1.0)) == (
        "canonical 3/8 -> 8/8; held-out full-vocab top-1 12.5% -> 87.5%; class-restricted 25.0% -> 100.0%")
    result = SimpleNamespace(state=SimpleNamespace(config=SimpleNamespace(snapshot_size=32, snapshot_every=10)),
                             steps_to_readable=40, steps_to_readable_train=None, classifier_layer=2)
    line = report.readable_line(result)
    assert line.startswith(f"Steps to readable: step 40 on held-out problems, never on training problems  (first "
                           f"snapshot with full-vocab top-1 >= {round(100 * READABLE)}% at L2 on a snapshot set")
