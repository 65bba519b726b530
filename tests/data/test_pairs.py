"""Patching pairs (``data.pairs``, ``data.tokens.encode_pair``): drawn pairs are held out, valid, seeded and balanced
over the ordered operation pairs; user pairs are checked in one sentence each (the form, then the token counts, then
that only the operator differs); each token's slot comes from the prompt's parts."""

from __future__ import annotations

from collections import Counter

import pytest

from lazarus_nb.data.pairs import ORDERED, Pair, available_pairs, draw_pairs, parse_pair, parse_prompt
from lazarus_nb.data.prompts import CANONICAL, CLASSES, OperandRanges, all_triples, problem, triple
from lazarus_nb.data.tokens import encode_pair, token_segments
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.train.config import TrainConfig


def test_a_pair_is_two_arithmetic_prompts():
    pair = parse_pair("45 * 12 = |45 - 12 = ")
    assert (pair.source.a, pair.source.label, pair.source.b, pair.source.answer) == (45, "multiply", 12, "540")
    assert (pair.target.label, pair.target.answer) == ("subtract", "33")
    assert pair.name == "45 * 12 = -> 45 - 12 = "


@pytest.mark.parametrize("text, expected", [
    ("7 * 8 = ", "two prompts 'SOURCE|TARGET'"),
    ("7 * 8 = |7 + 8 = |7 - 1 = ", "two prompts 'SOURCE|TARGET'"),
    ("7 * 8 = |7 + 8 =", "must be arithmetic 'a OP b = '"),  # no trailing space
    ("What is 7 times 8? |7 + 8 = ", "must be arithmetic"),
    ("7 / 8 = |7 + 8 = ", "division must be exact"),
    ("7 - 8 = |7 + 8 = ", "subtraction needs a > b"),
    ("0 * 8 = |0 + 8 = ", "operands start at 1"),
])
def test_a_bad_pair_is_one_sentence(text, expected):
    with pytest.raises(LazarusError, match=expected.replace("(", r"\(").replace("?", r"\?")):
        parse_pair(text)


def test_token_counts_are_checked_before_the_operator(tiny_llama):
    tok = tiny_llama.tokenizer
    counts = "must have equal token counts .* '7 \\* 8 = ' is 6 tokens, '7 \\+ 18 = ' is 7"
    with pytest.raises(LazarusError, match=counts):
        encode_pair(tok, parse_pair("7 * 8 = |7 + 18 = "))  # differs in more than the operator too
    with pytest.raises(LazarusError, match="must differ only in the operator: .* differ in operands"):
        encode_pair(tok, parse_pair("7 * 8 = |7 + 9 = "))
    with pytest.raises(LazarusError, match="differ in nothing"):
        encode_pair(tok, parse_pair("7 * 8 = |7 * 8 = "))


def test_encoded_pair_knows_its_operator_and_slots(tiny_llama):
    ids = encode_pair(tiny_llama.tokenizer, parse_pair("45 * 12 = |45 - 12 = "))
    # SmolLM2's tokenizer: digits one by one; ' *', ' ', ' =', ' ' are tokens of their own
    assert ids.slots == [("a", 1), ("a", 2), ("op", 1), ("space", 1), ("b", 1), ("b", 2), ("equals", 1), ("end", 1)]
    assert ids.first == 2 and ids.source_prompt[:2] == ids.target_prompt[:2]
    assert ids.source_prompt[3:] == ids.target_prompt[3:]
    assert tiny_llama.tokenizer.decode(ids.source_answer[:-1]) == "540"
    assert ids.target_answer[-1] == tiny_llama.tokenizer.eos_token_id  # the terminator is scored


class CharTokenizer:
    """A tokenizer with a BOS token that merges ' =' and the space after it into one token."""

    def encode(self, text: str) -> list[int]:
        out, i = [0], 0
        while i < len(text):
            if text.startswith(" = ", i):
                out.append(1)
                i += 3
            else:
                out.append(ord(text[i]))
                i += 1
        return out


def test_segments_follow_the_text_through_bos_and_merged_tokens():
    parts = ["12", " *", " ", "5", " =", " "]
    # BOS before any text; '1' '2' | ' ' '*' | ' ' | '5' | ' = ' merged: it ends in the last part
    assert token_segments(CharTokenizer(), parts) == [-1, 0, 0, 1, 1, 2, 3, 5]


def _split(seed: int = 0):
    return TrainConfig(seed=seed).split()


def test_drawn_pairs_are_held_out_valid_and_balanced():
    train, heldout = _split()
    pairs = draw_pairs(heldout, train, 24, seed=0)
    trained = {problem(triple(s)) for s in train}
    held = {problem(triple(s)) for s in heldout}
    canonical = {problem(triple(s)) for s in CANONICAL}
    valid = {label: set(all_triples(label, OperandRanges())) for label in CLASSES}
    assert len({(p.source.prompt, p.target.prompt) for p in pairs}) == 24
    for p in pairs:
        assert isinstance(p, Pair) and (p.source.a, p.source.b) == (p.target.a, p.target.b)
        both = {problem(triple(p.source)), problem(triple(p.target))}
        assert not both & trained and not both & canonical and both & held
        assert all((s.a, s.b) in valid[s.label] for s in (p.source, p.target))
    assert Counter((p.source.label, p.target.label) for p in pairs) == {op: 2 for op in ORDERED}


def test_draws_are_seeded():
    train, heldout = _split()
    assert draw_pairs(heldout, train, 12, seed=3) == draw_pairs(heldout, train, 12, seed=3)
    assert draw_pairs(heldout, train, 12, seed=3) != draw_pairs(heldout, train, 12, seed=4)
    # another run's split gives other pairs
    assert draw_pairs(*_split(1)[::-1], 12, seed=3) != draw_pairs(heldout, train, 12, seed=3)


@pytest.mark.parametrize("n", [0, -1, "all+1"])
def test_a_pair_count_out_of_range_names_the_option(n):
    train, heldout = _split()
    available = available_pairs(heldout, train)
    assert 24 < available < 400
    with pytest.raises(SettingError, match=f"must be between 1 and {available}") as exc:
        draw_pairs(heldout, train, available + 1 if n == "all+1" else n)
    assert exc.value.field == "num_pairs"
    assert len(draw_pairs(heldout, train, available)) == available  # every one of them, once


def test_parse_prompt_is_the_canonical_form():
    assert parse_prompt("89 - 34 = ") == CANONICAL[5]
