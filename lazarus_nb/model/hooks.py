"""Block hooks: record, and edit, the output of every block inside the model's own forward.

One mechanism serves the lens and the causal tests. While a hook is active, each block of the trunk wears a
subclass whose ``__call__`` runs the block, applies the active edits for that layer, and records the (edited)
output; the model's own forward (masks, sliding windows, embedding scale) runs unchanged around it, so every
mlx-lm architecture with the usual layout works without a per-architecture copy of its forward.

- :func:`capture` records each block's output (``forward_hidden``, ``hidden_states``: TransformerLens's
  ``run_with_cache`` in two functions).
- :func:`edited` replaces block ``l``'s output by ``edit(output)``: activation patching (an edit that ignores
  its input and returns the patched states), subspace ablation (a projection), steering (an added vector).
  mlx is lazy, so an edit that ignores its input also skips the blocks below it: nothing asks for their output.

Edits and captures nest: every active edit for a layer applies (outermost first), and the innermost capture
records the edited output, so the lens reads what the rest of the model sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import mlx.core as mx
import mlx.nn as nn

Edit = Callable[[mx.array], mx.array]


class _Record(list):
    """The block outputs one capture records; ``upto``: the last block it needs (None: every block)."""

    def __init__(self, upto: int | None = None):
        super().__init__()
        self.upto = upto


class _Enough(Exception):
    """Raised by a tapped block once its capture holds block ``upto``: the blocks above it are not run."""


_RECORDERS: list[_Record] = []  # stack of active captures (nested captures are allowed)
_EDITS: list[Mapping[int, Edit]] = []  # stack of active edits, each layer -> edit
_LAYER: dict[int, int] = {}  # id(block) -> its layer index, for the blocks of the tapped trunks
_TAPPED: dict[type, type] = {}


def _tapped_class(cls: type) -> type:
    if cls in _TAPPED.values():  # already tapped by an outer hook
        return cls
    if cls not in _TAPPED:

        def __call__(self, *args, **kwargs):  # noqa: N807 - replaces the block's call
            out = super(tapped, self).__call__(*args, **kwargs)
            layer = _LAYER.get(id(self))
            for edits in _EDITS:
                if layer in edits:
                    out = edits[layer](out)
            if _RECORDERS:
                record = _RECORDERS[-1]
                record.append(out)
                if record.upto is not None and len(record) > record.upto:
                    raise _Enough
            return out

        tapped = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})
        _TAPPED[cls] = tapped
    return _TAPPED[cls]


def parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(head, trunk): the module owning ``lm_head``/``args`` and the one owning ``layers``/``norm``."""
    head = getattr(model, "language_model", model)
    trunk = head.model
    if not all(hasattr(trunk, a) for a in ("layers", "norm", "embed_tokens")):
        raise ValueError(f"unsupported model layout: {type(trunk).__name__} lacks layers/norm/embed_tokens")
    return head, trunk


@contextmanager
def _tapped(model: nn.Module) -> Iterator[None]:
    """Every block of ``model`` wears its tapped class inside the block (restored after, also on an error)."""
    _, trunk = parts(model)
    originals = [type(block) for block in trunk.layers]
    known = {id(block): layer for layer, block in enumerate(trunk.layers)}
    added = {k: v for k, v in known.items() if k not in _LAYER}
    _LAYER.update(added)
    for block, cls in zip(trunk.layers, originals):
        block.__class__ = _tapped_class(cls)
    try:
        yield
    finally:
        for block, cls in zip(trunk.layers, originals):
            block.__class__ = cls
        for k in added:
            del _LAYER[k]


@contextmanager
def capture(model: nn.Module, upto: int | None = None) -> Iterator[list[mx.array]]:
    """Inside the block, every forward of ``model`` appends each block's output to the yielded list; with ``upto``,
    block ``upto`` ends the forward (``_Enough``) once it has recorded its output (``hidden_states``)."""
    record = _Record(upto)
    with _tapped(model):
        _RECORDERS.append(record)
        try:
            yield record
        finally:
            _RECORDERS.pop()


@contextmanager
def edited(model: nn.Module, edits: Mapping[int, Edit]) -> Iterator[None]:
    """Inside the block, block ``l``'s output is ``edits[l](output)`` in every forward of ``model``."""
    _, trunk = parts(model)
    bad = [layer for layer in edits if not 0 <= layer < len(trunk.layers)]
    if bad:
        raise ValueError(f"no block {bad[0]}: this model has blocks 0..{len(trunk.layers) - 1}")
    with _tapped(model):
        _EDITS.append(edits)
        try:
            yield
        finally:
            _EDITS.pop()


def forward_hidden(model: nn.Module, tokens: mx.array) -> tuple[list[mx.array], mx.array]:
    """Run the trunk once: (hidden state of every block (B, T, D) each, final-normed output (B, T, D)).

    The final vocabulary projection is *not* computed here, so callers pay for logits only where they
    need them (see ``LogitLens.unembed``).
    """
    _, trunk = parts(model)
    with capture(model) as hidden:
        final = trunk(tokens)
    return hidden, final


def hidden_states(model: nn.Module, tokens: mx.array, upto: int) -> list[mx.array]:
    """The outputs of blocks 0..``upto`` (B, T, D each): the model's own forward, stopped once block ``upto`` has run,
    so the blocks above it cost nothing (a readout of layer 16 of 30 runs 17 blocks)."""
    _, trunk = parts(model)
    with capture(model, upto) as hidden:
        try:
            trunk(tokens)
        except _Enough:
            pass
    return list(hidden)
