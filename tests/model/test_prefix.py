"""``model.prefix.forward_from``: a forward continued from recorded keys, each row from its own position, equals the
model's own forward of the whole sequence (every block's output and the final states), on llama, qwen2 and gemma3
(sliding window shorter than the prompt)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import lazarus_nb
from lazarus_nb.data.tokens import encode_prompt
from lazarus_nb.model.hooks import capture, forward_hidden
from lazarus_nb.model.prefix import forward_from


def assert_close(actual: mx.array, expected: mx.array) -> None:
    """Equal up to float32 rounding (the two forwards sum their attention in another order), relative to the
    largest value (gemma's states reach ~10)."""
    a, e = np.array(actual), np.array(expected)
    assert np.abs(a - e).max() <= 1e-5 * np.abs(e).max(), np.abs(a - e).max()


TEXTS = ["12 * 45 = 540", "7 + 8 = 15 and more", "144 / 12 = 12"]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text"])
def test_continuing_from_recorded_keys_is_the_whole_forward(arch, tiny_model_dir):
    loaded = lazarus_nb.load_model(str(tiny_model_dir(arch)))
    rows = [encode_prompt(loaded.tokenizer, t) for t in TEXTS]
    width = max(len(r) for r in rows)
    tokens = mx.array([r + [0] * (width - len(r)) for r in rows], dtype=mx.int32)
    hidden, final = forward_hidden(loaded.model, tokens)

    # every row's prompt split at its own point: the first part right-padded, the rest after its keys
    cut = [3, 5, 4]
    first = mx.array([r[:c] + [0] * (max(cut) - c) for r, c in zip(rows, cut)], dtype=mx.int32)
    head, keys = forward_from(loaded.model, first, mx.zeros(3, dtype=mx.int32), lengths=cut)
    assert np.array_equal(np.array(keys.positions), [[0, 1, 2, -1, -1], [0, 1, 2, 3, 4], [0, 1, 2, 3, -1]])
    rest_len = [len(r) - c for r, c in zip(rows, cut)]
    rest = mx.array([r[c:] + [0] * (max(rest_len) - len(r) + c) for r, c in zip(rows, cut)], dtype=mx.int32)
    with capture(loaded.model) as tail_hidden:
        tail, _ = forward_from(loaded.model, rest, mx.array(cut), keys, lengths=rest_len)
    for i, (c, n) in enumerate(zip(cut, rest_len)):
        assert_close(head[i, :c], final[i, :c])
        assert_close(tail[i, :n], final[i, c : c + n])
        for layer in (0, len(hidden) - 1):
            assert_close(tail_hidden[layer][i, :n], hidden[layer][i, c : c + n])
    # not trivially: without its prefix the rest is another computation
    alone, _ = forward_from(loaded.model, rest, mx.array(cut))
    assert np.abs(np.array(alone[1, :2]) - np.array(final[1, 5:7])).max() > 1e-2


def test_keys_before_a_limit_hide_the_later_positions(tiny_llama):
    tokens = mx.array([encode_prompt(tiny_llama.tokenizer, "12 * 45 = ")], dtype=mx.int32)
    _, full = forward_hidden(tiny_llama.model, tokens)
    _, keys = forward_from(tiny_llama.model, tokens, mx.zeros(1, dtype=mx.int32))
    # the prompt from position 2 on, after only the keys of positions 0 and 1: the whole forward again
    out, _ = forward_from(tiny_llama.model, tokens[:, 2:], mx.array([2]), keys.before(mx.array([2])))
    assert_close(out[0], full[0, 2:])
