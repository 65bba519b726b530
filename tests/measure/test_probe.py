"""Tests of the linear probe (lazarus_nb.probe), checked against expectations computed independently."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lazarus_nb.measure import probe
from lazarus_nb.measure.probe import (
    LayerProbe,
    ProbeConfig,
    ProbeResult,
    cross_validate,
    fit_logistic,
    predict,
    probe_layers,
    stratified_folds,
)


def _separable_2d() -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated 2-D clusters of 5 points each (linearly separable by construction)."""
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    offsets = np.array([[0.0, 0.0], [0.5, 0.0], [-0.5, 0.0], [0.0, 0.5], [0.0, -0.5]])
    x = np.concatenate([c + offsets for c in centres])
    y = np.repeat(np.arange(3), len(offsets))
    return x, y


def _reg_loss(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> float:
    """Mean softmax cross-entropy + l2/2 ||W||^2, written independently of the module."""
    logits = x @ w + b
    m = logits.max(axis=1, keepdims=True)
    log_z = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
    return float(np.mean(log_z - logits[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(w * w))


def _planted(n_per_class: int = 30, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Layer 0: pure noise. Layer 1: the label linearly encoded (a class direction) plus the same noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n_per_class)
    rng.shuffle(y)
    noise = rng.normal(size=(len(y), d))
    directions = rng.normal(size=(4, d))
    hidden = np.stack([noise, noise + 3.0 * directions[y]])
    return hidden, y


# ---------------------------------------------------------------------------------------------- fit_logistic


def test_fit_logistic_separates_separable_data():
    x, y = _separable_2d()
    w, b = fit_logistic(x, y, n_classes=3, l2=1e-2, max_iter=500)
    assert w.shape == (2, 3) and b.shape == (3,)
    assert w.dtype == np.float64
    assert np.array_equal(predict(x, w, b), y)


def test_fit_logistic_reaches_a_stationary_point():
    x, y = _separable_2d()
    l2 = 1e-2
    w, b = fit_logistic(x, y, n_classes=3, l2=l2, max_iter=500)
    theta = np.concatenate([w.ravel(), b])

    def f(t: np.ndarray) -> float:
        return _reg_loss(t[:6].reshape(2, 3), t[6:], x, y, l2)

    # Central finite differences of the independently written loss: every partial derivative ~ 0.
    eps = 1e-5
    grad = np.array([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in np.eye(theta.size)])
    assert np.abs(grad).max() < 1e-5
    # And it is the minimum, not just any stationary point: small random moves never lower the loss.
    rng = np.random.default_rng(1)
    f0 = f(theta)
    assert all(f(theta + 1e-3 * rng.normal(size=theta.size)) >= f0 for _ in range(20))


def test_fit_logistic_is_deterministic_and_handles_absent_class():
    x, y = _separable_2d()
    keep = y != 2  # class 2 absent from the training data
    w1, b1 = fit_logistic(x[keep], y[keep], n_classes=3, l2=1e-2, max_iter=500)
    w2, b2 = fit_logistic(x[keep], y[keep], n_classes=3, l2=1e-2, max_iter=500)
    assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    assert np.all(np.isfinite(w1))
    assert not np.any(predict(x, w1, b1) == 2)  # a class never seen is never predicted
    assert np.array_equal(predict(x[keep], w1, b1), y[keep])


def test_fit_logistic_rejects_out_of_range_labels():
    x, y = _separable_2d()
    with pytest.raises(ValueError):
        fit_logistic(x, y, n_classes=2, l2=1e-2, max_iter=10)


# ------------------------------------------------------------------------------------------ stratified_folds


def test_stratified_folds_partition_and_stratify():
    y = np.array([0] * 10 + [1] * 7 + [2] * 5 + [3] * 13)
    folds = stratified_folds(y, 5, seed=3)
    assert len(folds) == 5
    everything = np.concatenate(folds)
    assert sorted(everything.tolist()) == list(range(len(y)))  # disjoint and covering
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for c in range(4):
        per_fold = [int(np.sum(y[f] == c)) for f in folds]
        assert min(per_fold) >= 1  # every class (count >= 5) is in every fold
        assert max(per_fold) - min(per_fold) <= 1  # and spread evenly


def test_stratified_folds_are_deterministic_by_seed():
    y = np.repeat(np.arange(3), 8)
    a = stratified_folds(y, 4, seed=7)
    b = stratified_folds(y, 4, seed=7)
    c = stratified_folds(y, 4, seed=8)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))


def test_stratified_folds_small_class_goes_where_it_can():
    y = np.array([0, 0, 0, 0, 1, 1])  # class 1 has 2 samples, k = 3: one fold must lack it
    folds = stratified_folds(y, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(6))
    assert sum(int(np.any(y[f] == 1)) for f in folds) == 2


def test_stratified_folds_rejects_bad_k():
    with pytest.raises(ValueError):
        stratified_folds(np.array([0, 1, 0, 1]), 1, seed=0)
    with pytest.raises(ValueError):
        stratified_folds(np.array([0, 1, 0, 1]), 5, seed=0)


# ---------------------------------------------------------------------------------------------- no leakage


def test_standardisation_uses_train_fold_only(monkeypatch):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 6)
    x = rng.normal(size=(12, 3))
    x[0] *= 1e6  # one prompt at a wildly different scale: full-data statistics would be dominated by it
    seen: list[tuple[str, np.ndarray]] = []
    real_fit, real_predict = probe.fit_logistic, probe.predict

    def spy_fit(xt, yt, n_classes, l2, max_iter):
        seen.append(("train", xt.copy()))
        return real_fit(xt, yt, n_classes, l2, max_iter)

    def spy_predict(xs, w, b):
        seen.append(("test", xs.copy()))
        return real_predict(xs, w, b)

    monkeypatch.setattr(probe, "fit_logistic", spy_fit)
    monkeypatch.setattr(probe, "predict", spy_predict)
    config = ProbeConfig(folds=3, seed=5)
    cross_validate(x, y, 2, config)

    folds = stratified_folds(y, 3, config.seed)
    assert [kind for kind, _ in seen] == ["train", "test"] * 3
    for i, test in enumerate(folds):
        train = np.setdiff1d(np.arange(12), test)
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
        np.testing.assert_allclose(seen[2 * i][1], (x[train] - mu) / sd, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(seen[2 * i + 1][1], (x[test] - mu) / sd, rtol=1e-10, atol=1e-12)


def test_constant_feature_does_not_break_standardisation():
    hidden, y = _planted()
    x = np.concatenate([hidden[1], np.ones((len(y), 1))], axis=1)
    accs = cross_validate(x, y, 4, ProbeConfig())
    assert all(np.isfinite(accs)) and np.mean(accs) > 0.9


# -------------------------------------------------------------------------------------------- probe_layers


def test_planted_signal_is_found_at_layer_1():
    hidden, y = _planted()
    result = probe_layers(hidden, y)
    l0, l1 = result.layers
    assert (l0.layer, l1.layer) == (0, 1)
    assert result.n_folds == 5 and result.n_samples == 120 and result.n_classes == 4
    assert result.chance == pytest.approx(0.25)
    assert l1.accuracy >= 0.95
    assert l0.accuracy < 0.45  # chance is 0.25
    assert result.best_layer == 1 and result.best_accuracy == l1.accuracy
    assert l0.control < 0.45 and l1.control < 0.45
    assert l1.selectivity > 0.5
    assert l1.selectivity == pytest.approx(l1.accuracy - l1.control)
    assert len(l1.fold_accuracies) == 5
    assert l1.accuracy == pytest.approx(np.mean(l1.fold_accuracies))
    assert l1.std == pytest.approx(np.std(l1.fold_accuracies))


def test_two_samples_per_class_works():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 2)
    hidden = rng.normal(size=(3, 8, 32))
    result = probe_layers(hidden, y)
    assert result.n_folds == 2
    for p in result.layers:
        assert len(p.fold_accuracies) == 2
        for v in (p.accuracy, p.control, *p.fold_accuracies):
            assert 0.0 <= v <= 1.0


def test_chance_is_majority_class_frequency():
    y = np.array([0] * 6 + [1] * 2 + [2] * 2)
    result = probe_layers(np.random.default_rng(0).normal(size=(1, 10, 5)), y, n_classes=4)
    assert result.chance == pytest.approx(0.6)  # not 1 / n_classes
    assert result.n_classes == 4 and result.n_folds == 2


def test_one_sample_in_a_class_is_a_clear_error():
    y = np.array([0, 0, 1, 1, 2])
    hidden = np.zeros((1, 5, 4))
    with pytest.raises(ValueError, match=r"at least 2 prompts.*class 2 has 1"):
        probe_layers(hidden, y)


def test_single_class_is_an_error():
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_layers(np.zeros((1, 4, 3)), np.zeros(4, dtype=int))


def test_layer_selection_progress_and_ids():
    hidden, y = _planted()
    hidden = np.concatenate([hidden, hidden])  # 4 layers: noise, signal, noise, signal
    calls: list[int] = []
    result = probe_layers(hidden, y, layers=[3, 0], config=ProbeConfig(control=False), progress=calls.append)
    assert [p.layer for p in result.layers] == [3, 0]
    assert calls == [3, 0]
    assert result.best_layer == 3
    assert np.isnan(result.layers[0].control) and np.isnan(result.layers[0].selectivity)
    with pytest.raises(ValueError, match="out of range"):
        probe_layers(hidden, y, layers=[4])


def test_control_permutation_is_shared_by_layers_and_run_is_deterministic():
    hidden, y = _planted(n_per_class=10)
    hidden = np.stack([hidden[0], hidden[0]])  # two identical layers
    a = probe_layers(hidden, y, config=ProbeConfig(seed=3))
    b = probe_layers(hidden, y, config=ProbeConfig(seed=3))
    # One shared permutation: identical layers get identical controls (per-layer shuffles would differ).
    assert a.layers[0].control == a.layers[1].control
    assert a.to_dict() == b.to_dict()


def test_ties_go_to_the_earliest_layer():
    def lp(layer: int, acc: float) -> LayerProbe:
        return LayerProbe(layer, acc, 0.0, 0.25, 0.0, acc - 0.25, [acc, acc])

    result = ProbeResult([lp(4, 0.8), lp(2, 0.9), lp(7, 0.9), lp(1, 0.5)], 2, 8, 4, 0.25)
    assert result.best_layer == 2 and result.best_accuracy == 0.9


def test_labels_out_of_range_are_rejected():
    with pytest.raises(ValueError, match="labels must lie in"):
        probe_layers(np.zeros((1, 4, 3)), np.array([0, 0, 1, 1]), n_classes=1)


# ------------------------------------------------------------------------------------------------- to_dict


def test_to_dict_is_json_and_matches_fields():
    hidden, y = _planted(n_per_class=6)
    result = probe_layers(hidden, y)
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(d) == {"layers", "best_layer", "best_accuracy", "n_folds", "n_samples", "n_classes", "chance"}
    assert d["best_layer"] == result.best_layer and d["best_accuracy"] == result.best_accuracy
    assert (d["n_folds"], d["n_samples"], d["n_classes"]) == (5, 24, 4)
    assert d["chance"] == result.chance
    assert len(d["layers"]) == 2
    for row, p in zip(d["layers"], result.layers, strict=True):
        assert set(row) == {"layer", "accuracy", "std", "control", "control_std", "selectivity"}
        assert row == {
            "layer": p.layer,
            "accuracy": p.accuracy,
            "std": p.std,
            "control": p.control,
            "control_std": p.control_std,
            "selectivity": p.selectivity,
        }


def test_to_dict_without_control_uses_null():
    hidden, y = _planted(n_per_class=6)
    d = probe_layers(hidden, y, config=ProbeConfig(control=False)).to_dict()
    text = json.dumps(d, allow_nan=False)  # would raise on NaN
    row = json.loads(text)["layers"][0]
    assert row["control"] is None and row["control_std"] is None and row["selectivity"] is None
