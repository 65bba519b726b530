"""Linear probes on hidden states (baseline step 1).

Per layer, a multinomial logistic-regression probe on the last-prompt-token hidden state is scored by
stratified k-fold cross-validation, with k = min(folds, smallest class count). A control probe on
shuffled labels (Hewitt & Liang 2019) tells how much of the accuracy the probe could get by memorising
arbitrary labels; selectivity = accuracy - control accuracy.

Everything is plain numpy (no scikit-learn): the original tool's probe crashed on small classes and with
current scikit-learn, so this one is self-contained and works down to 2 prompts per class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ProbeConfig:
    """Options of the probe and its cross-validation."""

    folds: int = 5  # upper bound on k; actual k = min(folds, smallest class count), and k >= 2
    l2: float = 1e-2  # ridge penalty on W (features standardised per fold); keeps small-n probes finite
    max_iter: int = 500  # optimiser (L-BFGS) iterations per fit
    seed: int = 0  # seeds the fold assignment and the shuffled-label control
    control: bool = True  # also run the shuffled-label control (Hewitt & Liang 2019)


@dataclass
class LayerProbe:
    """Cross-validated probe scores of one layer."""

    layer: int  # layer id (residual stream output of block `layer`)
    accuracy: float  # mean held-out fold accuracy
    std: float  # population std of the fold accuracies
    control: float  # same probe on shuffled labels, mean over folds; nan if the control is disabled
    control_std: float  # std over folds of the control accuracy; nan if the control is disabled
    selectivity: float  # accuracy - control; nan if the control is disabled
    fold_accuracies: list[float] = field(default_factory=list)  # held-out accuracy of each fold


@dataclass
class ProbeResult:
    """Probe scores of all probed layers, plus what is needed to read them."""

    layers: list[LayerProbe]  # one entry per probed layer, in the order requested
    n_folds: int  # k actually used
    n_samples: int  # number of prompts
    n_classes: int  # number of classes (label values are in [0, n_classes))
    chance: float  # frequency of the majority class: the accuracy of always guessing it

    @property
    def best_layer(self) -> int:
        """Layer with the highest mean accuracy (ties go to the earliest layer)."""
        return self._best().layer

    @property
    def best_accuracy(self) -> float:
        """Mean accuracy of `best_layer`."""
        return self._best().accuracy

    def _best(self) -> LayerProbe:
        if not self.layers:
            raise ValueError("no layers were probed")
        # Sort key: highest accuracy first, then lowest layer id, so ties resolve to the earliest layer.
        return min(self.layers, key=lambda p: (-p.accuracy, p.layer))

    def to_dict(self) -> dict:
        """JSON-friendly summary (nan becomes None, so `json.dumps(..., allow_nan=False)` works)."""
        return {
            "layers": [
                {
                    "layer": int(p.layer),
                    "accuracy": _json_float(p.accuracy),
                    "std": _json_float(p.std),
                    "control": _json_float(p.control),
                    "control_std": _json_float(p.control_std),
                    "selectivity": _json_float(p.selectivity),
                }
                for p in self.layers
            ],
            "best_layer": int(self.best_layer),
            "best_accuracy": _json_float(self.best_accuracy),
            "n_folds": int(self.n_folds),
            "n_samples": int(self.n_samples),
            "n_classes": int(self.n_classes),
            "chance": _json_float(self.chance),
        }


def _json_float(v: float) -> float | None:
    # NaN is not valid JSON; None (null) is what a reader of the file expects for "not computed".
    v = float(v)
    return None if math.isnan(v) else v


def _loss_grad(theta: np.ndarray, x: np.ndarray, onehot: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """Loss and gradient of mean cross-entropy + l2/2 * ||W||^2 at theta = [W.ravel(), b]."""
    n, d = x.shape
    c = onehot.shape[1]
    w = theta[: d * c].reshape(d, c)
    b = theta[d * c :]
    z = x @ w + b
    z -= z.max(axis=1, keepdims=True)  # log-sum-exp shift: exp never overflows
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - lse
    loss = -(onehot * logp).sum() / n + 0.5 * l2 * float(w.ravel() @ w.ravel())
    r = (np.exp(logp) - onehot) / n  # dLoss/dz
    gw = x.T @ r + l2 * w
    gb = r.sum(axis=0)
    return float(loss), np.concatenate([gw.ravel(), gb])


def _lbfgs(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    max_iter: int,
    memory: int = 10,
    gtol: float = 1e-7,
) -> np.ndarray:
    """Minimise a smooth function with L-BFGS and an Armijo backtracking line search."""
    x = x0.copy()
    f, g = fun(x)
    hist: list[tuple[np.ndarray, np.ndarray, float]] = []  # (s, y, 1 / s.y), oldest first
    for _ in range(max_iter):
        if np.abs(g).max() <= gtol:
            break
        # Two-loop recursion: d = -H g with H the L-BFGS inverse-Hessian approximation.
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(hist):
            a = rho * float(s @ q)
            q -= a * y
            alphas.append(a)
        if hist:
            s, y, _rho = hist[-1]
            q *= float(s @ y) / float(y @ y)  # usual scaling makes the unit step a good first guess
        else:
            q *= 1.0 / max(1.0, float(np.abs(g).max()))  # first step: plain gradient, kept moderate
        for (s, y, rho), a in zip(hist, reversed(alphas), strict=True):
            q += s * (a - rho * float(y @ q))
        d = -q
        gd = float(g @ d)
        if gd >= 0:  # not a descent direction (numerical trouble): restart from steepest descent
            hist.clear()
            d = -g / max(1.0, float(np.abs(g).max()))
            gd = float(g @ d)
        t = 1.0
        while True:
            x_new = x + t * d
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * t * gd:
                break
            t *= 0.5
            if t < 1e-12:  # no further decrease possible at float64 precision: we are at the optimum
                return x
        s = x_new - x
        y = g_new - g
        sy = float(s @ y)
        # Keep the pair only if curvature is positive (s.y >= 0 always holds for this convex loss,
        # up to rounding): otherwise H would stop being positive definite.
        if sy > 1e-12 * float(y @ y):
            hist.append((s, y, 1.0 / sy))
            if len(hist) > memory:
                hist.pop(0)
        x, f, g = x_new, f_new, g_new
    return x


def fit_logistic(
    x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a multinomial (softmax) logistic regression.

    Minimises mean cross-entropy + ``l2 / 2 * ||W||^2`` (the bias is not penalised) with L-BFGS from a
    zero start, in float64, so the fit is deterministic. Returns ``(W, b)`` with shapes ``(D, C)`` and
    ``(C,)``, ``C = n_classes``. A class absent from ``y`` gets a zero weight column and bias ``-inf``:
    it is never predicted (its unpenalised bias would otherwise drift towards -inf for all iterations).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n, d = x.shape
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= n_classes)):
        raise ValueError(f"y must be {n} class indices in [0, {n_classes})")
    present, y_idx = np.unique(y, return_inverse=True)
    c = len(present)
    onehot = np.zeros((n, c))
    onehot[np.arange(n), y_idx] = 1.0
    theta = _lbfgs(lambda t: _loss_grad(t, x, onehot, l2), np.zeros(d * c + c), max_iter)
    w = np.zeros((d, n_classes))
    b = np.full(n_classes, -np.inf)
    w[:, present] = theta[: d * c].reshape(d, c)
    b[present] = theta[d * c :]
    return w, b


def predict(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Class indices (argmax of the logits ``x @ W + b``) for each row of ``x``."""
    return np.argmax(np.asarray(x, dtype=np.float64) @ w + b, axis=1)


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Split sample indices into ``k`` stratified test folds.

    Each class is shuffled (seeded) and dealt round-robin over the folds, continuing where the previous
    class stopped, so every fold gets every class that has at least ``k`` samples and fold sizes differ
    by at most one. Returns the sorted test-index array of each fold; together they partition
    ``range(len(y))``.
    """
    y = np.asarray(y)
    if k < 2 or k > len(y):
        raise ValueError(f"need 2 <= k <= number of samples ({len(y)}), got k={k}")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    fold_of = np.empty(len(y), dtype=np.int64)
    fold_of[order] = np.arange(len(y)) % k
    return [np.flatnonzero(fold_of == i) for i in range(k)]


def _num_folds(y: np.ndarray, folds: int) -> int:
    """k = min(folds, smallest class count), after checking that cross-validation is possible at all."""
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least 2 classes; the labels contain {len(classes)}")
    small = int(counts.argmin())
    if counts[small] < 2:
        raise ValueError(
            f"each class needs at least 2 prompts for cross-validation; class {int(classes[small])} "
            f"has {int(counts[small])}"
        )
    if folds < 2:
        raise ValueError(f"ProbeConfig.folds must be at least 2, got {folds}")
    return int(min(folds, counts[small]))


def cross_validate(x: np.ndarray, y: np.ndarray, n_classes: int, config: ProbeConfig) -> list[float]:
    """Held-out accuracy of the probe on each of k stratified folds.

    k = min(config.folds, smallest class count); folds come from ``stratified_folds(y, k, config.seed)``.
    Features are standardised with the mean and std of the *training* fold only, so nothing about the
    held-out prompts leaks into the probe.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    k = _num_folds(y, config.folds)
    accuracies = []
    for test in stratified_folds(y, k, config.seed):
        train = np.ones(len(y), dtype=bool)
        train[test] = False
        mu = x[train].mean(axis=0)
        sd = x[train].std(axis=0)
        sd[sd == 0] = 1.0  # a constant feature carries no information; avoid 0/0
        w, b = fit_logistic((x[train] - mu) / sd, y[train], n_classes, config.l2, config.max_iter)
        pred = predict((x[test] - mu) / sd, w, b)
        accuracies.append(float(np.mean(pred == y[test])))
    return accuracies


def probe_layers(
    hidden: np.ndarray,
    labels: np.ndarray,
    layers: Sequence[int] | None = None,
    config: ProbeConfig | None = None,
    n_classes: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ProbeResult:
    """Cross-validated linear probe (and shuffled-label control) at each requested layer.

    ``hidden`` is ``(num_layers, N, D)``: last-prompt-token hidden states; ``labels`` is ``(N,)`` ints in
    ``[0, n_classes)`` (``n_classes`` defaults to ``max(labels) + 1``). ``layers`` picks layer indices
    (default: all; negative indices count from the end and are reported as non-negative ids).
    ``progress``, if given, is called with each layer id once that layer is done.

    Raises ValueError when cross-validation is impossible: fewer than 2 classes, or a class with fewer
    than 2 prompts.
    """
    config = config or ProbeConfig()
    # Array-likes with a shape (np.memmap, framework arrays) are left alone and converted one layer at a
    # time below; anything else (nested lists) becomes an ndarray here.
    hidden = hidden if hasattr(hidden, "shape") and hasattr(hidden, "ndim") else np.asarray(hidden)
    if hidden.ndim != 3:
        raise ValueError(f"hidden must be (num_layers, N, D), got shape {tuple(hidden.shape)}")
    num_layers, n, _ = hidden.shape
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match hidden, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if n else 0
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    k = _num_folds(labels, config.folds)  # validate once, before any work
    ids = list(range(num_layers)) if layers is None else [int(i) for i in layers]
    if not ids:
        raise ValueError("no layers to probe")
    for i in ids:
        if not -num_layers <= i < num_layers:
            raise ValueError(f"layer {i} is out of range for {num_layers} layers")
    ids = [i % num_layers for i in ids]

    # ONE permutation for every layer, so controls (and selectivities) are comparable across layers.
    # Its own seeded stream, so switching the control on or off leaves the fold assignment unchanged.
    shuffled = labels[np.random.default_rng([config.seed, 1]).permutation(n)]

    results = []
    for i in ids:
        x = np.asarray(hidden[i], dtype=np.float64)  # per layer: never a float64 copy of the whole stack
        if not np.isfinite(x).all():
            raise ValueError(f"hidden states of layer {i} contain nan or inf")
        accs = cross_validate(x, labels, n_classes, config)
        acc, std = float(np.mean(accs)), float(np.std(accs))
        if config.control:
            ctrl = cross_validate(x, shuffled, n_classes, config)
            c_mean, c_std = float(np.mean(ctrl)), float(np.std(ctrl))
        else:
            c_mean = c_std = float("nan")
        results.append(LayerProbe(i, acc, std, c_mean, c_std, acc - c_mean, accs))
        if progress is not None:
            progress(i)

    chance = float(np.bincount(labels).max() / n)
    return ProbeResult(layers=results, n_folds=k, n_samples=n, n_classes=n_classes, chance=chance)
