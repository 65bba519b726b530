"""The model's own forward continued from recorded keys and values: each row starts at its own position, after its
own prefix.

Activation patching runs the same prompt thousands of times with one block output changed at one position ``p``;
every position before ``p`` is the clean run's, in every block. :func:`forward_from` runs only the positions from
``p`` on, attending to the clean run's keys and values of the positions before (the "prefix"). It works through
mlx-lm's KV-cache protocol, which every block's attention already speaks (``cache.offset`` places RoPE,
``cache.update_and_fetch`` returns the keys to attend to, ``cache.make_mask`` the mask): the trunk's own forward
runs unchanged, so hooks (:mod:`lazarus_nb.model.hooks`) edit and record blocks inside it as in any other forward.

Rows are independent: row ``r`` starts at ``start[r]`` (its RoPE offset) and attends to the prefix keys that
:attr:`Keys.positions` marks as its own (``-1``: not a key of that row), then causally to its new tokens (within the
sliding window of a layer that has one). Right padding is harmless, as in a plain causal forward, and the keys it
returns mark the padded tokens as no keys (``lengths``). Works for architectures whose RoPE takes one offset per
row (llama, qwen2, gemma3: ``mx.fast.rope`` with an array offset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from lazarus_nb.model.hooks import parts


@dataclass
class Keys:
    """The keys and values every block attended to, per row, and the absolute position of each key."""

    keys: list[mx.array]  # per block: (R, kv_heads, K, head_dim), after RoPE
    values: list[mx.array]  # per block: (R, kv_heads, K, head_dim)
    positions: mx.array  # (R, K) int32: the position each key sits at; -1: not a key of that row

    def take(self, rows: mx.array) -> Keys:
        """The keys of ``rows`` (an index array; a row may be taken several times)."""
        return Keys([k[rows] for k in self.keys], [v[rows] for v in self.values], self.positions[rows])

    @staticmethod
    def concat(parts: Sequence[Keys]) -> Keys:
        """The rows of ``parts`` in order, each padded to the widest with no keys (position -1)."""
        width = max(p.positions.shape[1] for p in parts)

        def pad(a: mx.array, axis: int, value: int = 0) -> mx.array:
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, width - a.shape[axis])
            return mx.pad(a, widths, constant_values=value)

        return Keys([mx.concatenate([pad(p.keys[i], 2) for p in parts]) for i in range(len(parts[0].keys))],
                    [mx.concatenate([pad(p.values[i], 2) for p in parts]) for i in range(len(parts[0].values))],
                    mx.concatenate([pad(p.positions, 1, -1) for p in parts]))

    def before(self, limit: mx.array) -> Keys:
        """Only the keys at positions before ``limit`` (R,): row ``r`` keeps positions ``< limit[r]``."""
        return Keys(self.keys, self.values, mx.where(self.positions < limit[:, None], self.positions, -1))


class _Continuation:
    """mlx-lm's cache protocol for one block: the prefix's keys, then the new tokens' keys, and their mask."""

    def __init__(self, prefix: Keys | None, block: int, start: mx.array):
        self.prefix = prefix
        self.block = block
        self.offset = start  # (R,): RoPE places row r's new tokens at start[r], start[r] + 1, ...
        self.keys: mx.array | None = None  # what the block attended to (prefix + new), once it has run
        self.values: mx.array | None = None

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        if self.prefix is not None:
            keys = mx.concatenate([self.prefix.keys[self.block], keys], axis=2)
            values = mx.concatenate([self.prefix.values[self.block], values], axis=2)
        self.keys, self.values = keys, values
        return keys, values

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None) -> mx.array:
        """(R, 1, n, K + n) bool: query i of row r (at position start[r] + i) sees the keys of its row at positions
        up to its own (and, with ``window_size``, fewer than ``window_size`` before it)."""
        queries = self.offset[:, None] + mx.arange(n)[None, :]
        keys = queries if self.prefix is None else mx.concatenate([self.prefix.positions, queries], axis=1)
        at, to = keys[:, None, :], queries[:, :, None]
        mask = (at >= 0) & (at <= to)
        if window_size is not None:
            mask = mask & (to - at < window_size)
        return mask[:, None]


def forward_from(
    model: nn.Module,
    tokens: mx.array,
    start: mx.array,
    prefix: Keys | None = None,
    lengths: Sequence[int] | mx.array | None = None,
) -> tuple[mx.array, Keys]:
    """Run the trunk on ``tokens`` (R, N), row ``r`` placed at positions ``start[r]``.. after the keys ``prefix``
    marks as its own (None: no prefix). Returns (the final-normed output (R, N, D), the keys of this forward:
    ``prefix``'s followed by the new tokens', the new tokens from ``lengths[r]`` on (padding) marked as no keys).
    A block whose output an edit replaces leaves its keys unevaluated (mlx is lazy): do not read them."""
    _, trunk = parts(model)
    start = start.astype(mx.int32)
    caches = [_Continuation(prefix, i, start) for i in range(len(trunk.layers))]
    final = trunk(tokens, cache=caches)
    n = tokens.shape[1]
    positions = start[:, None] + mx.arange(n)[None, :]
    if lengths is not None:
        positions = mx.where(mx.arange(n)[None, :] < mx.array(lengths)[:, None], positions, -1)
    if prefix is not None:
        positions = mx.concatenate([prefix.positions, positions], axis=1)
    return final, Keys([c.keys for c in caches], [c.values for c in caches], positions.astype(mx.int32))
