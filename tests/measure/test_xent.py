"""``xent``: the CPU cross-entropy has the values and gradients of the textbook formula, computed in float64."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import lazarus_nb  # noqa: F401  (preloads the BLAS before mlx runs)
from lazarus_nb.measure.xent import cross_entropy, exp_nonpositive


def reference(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-row cross-entropy, its gradient wrt the logits for a summed loss) in float64."""
    x = logits.astype(np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    rows = np.arange(len(x))
    ce = lse[:, 0] - shifted[rows, targets]
    grad = np.exp(shifted - lse)
    grad[rows, targets] -= 1.0
    return ce, grad


def test_exp_nonpositive_matches_float64_more_closely_than_mx_exp():
    x = np.concatenate([-np.geomspace(1e-8, 87.0, 50_000), np.linspace(-87.0, 0.0, 50_001)]).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    ours = np.array(exp_nonpositive(mx.array(x))).astype(np.float64)
    assert np.abs(ours / exact - 1).max() < 3e-7  # float32 rounding is 6e-8
    assert np.array(exp_nonpositive(mx.array([0.0, -200.0, -np.inf], dtype=mx.float32))).tolist() == \
        pytest.approx([1.0, 1.6458e-38, 1.6458e-38], rel=1e-3)  # underflow clamps to exp(-87)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_values_and_gradients_equal_the_float64_formula_and_mlx(scale):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((12, 5000)) * scale).astype(np.float32)
    targets = rng.integers(0, 5000, 12)
    x, t = mx.array(logits), mx.array(targets, dtype=mx.int32)
    ce, grad = reference(logits, targets)

    value, ours = mx.value_and_grad(lambda z: cross_entropy(z, t).sum())(x)
    assert np.allclose(np.array(cross_entropy(x, t)), ce, rtol=1e-6, atol=1e-5)
    assert value.item() == pytest.approx(ce.sum(), rel=1e-6)
    assert np.abs(np.array(ours) - grad).max() < 1e-6
    mlx_value, mlx_grad = mx.value_and_grad(lambda z: nn.losses.cross_entropy(z, t).sum())(x)
    assert value.item() == pytest.approx(mlx_value.item(), rel=1e-6)
    assert np.abs(np.array(ours) - np.array(mlx_grad)).max() < 1e-6

    compiled = mx.compile(mx.value_and_grad(lambda z: (cross_entropy(z, t) * mx.arange(12)).sum()))
    c_value, c_grad = compiled(x)  # a weighted sum: the cotangent reaches every row
    assert c_value.item() == pytest.approx((ce * np.arange(12)).sum(), rel=1e-6)
    assert np.abs(np.array(c_grad) - grad * np.arange(12)[:, None]).max() < 1e-5


def test_nan_logits_give_a_nan_loss_and_no_rows_give_none():
    x = mx.zeros((2, 10)).at[1, 3].add(float("nan"))
    assert np.isnan(np.array(cross_entropy(x, mx.array([0, 0])))).tolist() == [False, True]
    assert cross_entropy(mx.zeros((0, 10)), mx.zeros((0,), dtype=mx.int32)).shape == (0,)
