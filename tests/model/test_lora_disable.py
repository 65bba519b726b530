"""Switching adapters off at chosen blocks (``lora.disabled(model, layers)``): the model then computes exactly the
model adapted at the other blocks only, and everything is restored on leaving."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from lazarus_nb.model import lora

TOKENS = mx.array([[5, 100, 2000, 7, 9, 11, 13], [1, 2, 3, 4, 5, 6, 7]])


def with_random_b(model, seed: int = 4) -> dict[str, mx.array]:
    """Give every adapter a random B (so each block's adapter changes the model); its arrays."""
    mx.random.seed(seed)
    for m in lora.adapters(model).values():
        m.lora_b = 0.3 * mx.random.normal(m.lora_b.shape)
    return lora.lora_arrays(model)


@pytest.mark.parametrize("upto", [0, 2])
def test_disabling_the_lower_blocks_equals_a_model_adapted_above_only(fresh, upto):
    everywhere = fresh()
    lora.apply_lora(everywhere.model, lora.LoraConfig(rank=4))
    arrays = with_random_b(everywhere.model)
    upper = [i for i in range(everywhere.num_layers) if i > upto]
    above = fresh()
    lora.apply_lora(above.model, lora.LoraConfig(rank=4, layers=upper))
    lora.set_lora_arrays(above.model, {k: v for k, v in arrays.items() if int(k.split("_")[1]) in upper})

    full = np.array(everywhere.model(TOKENS))
    with lora.disabled(everywhere.model, range(upto + 1)):
        partial = np.array(everywhere.model(TOKENS))
    expected = np.array(above.model(TOKENS))
    assert np.array_equal(partial, expected)  # scale 0 adds exactly nothing
    assert not np.allclose(partial, full)  # the lower blocks' adapters did change the model
    assert np.array_equal(np.array(everywhere.model(TOKENS)), full)  # restored on leaving
    with lora.disabled(everywhere.model):  # no layers given: every adapter off, the base model
        base = np.array(everywhere.model(TOKENS))
    assert np.array_equal(base, np.array(fresh().model(TOKENS)))


def test_scales_are_restored_after_an_error(fresh):
    loaded = fresh()
    lora.apply_lora(loaded.model, lora.LoraConfig(rank=2))
    with pytest.raises(RuntimeError), lora.disabled(loaded.model, [1]):
        assert lora.adapters(loaded.model)[(1, "v")].scale == 0.0
        assert lora.adapters(loaded.model)[(0, "v")].scale == 2.0
        raise RuntimeError
    assert all(m.scale == 2.0 for m in lora.adapters(loaded.model).values())
