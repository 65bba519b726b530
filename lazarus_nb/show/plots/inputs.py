"""Input checks for :mod:`lazarus_nb.show.plots`: every plotting function validates its arrays here first, so a
wrong shape or a non-probability fails with one sentence naming the argument instead of a matplotlib
traceback (or, worse, a silently wrong picture).
"""

from __future__ import annotations

import numpy as np


def vector(name: str, x, *, allow_empty: bool = False) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name} is required")
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty; nothing to plot")
    return arr


def same_length(name: str, arr: np.ndarray, n: int, ref: str) -> None:
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but {ref} has {n}; they must match one-to-one")


def layers(layers, name: str = "layers", *, increasing: bool = False) -> np.ndarray:
    arr = vector(name, layers)
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must be integer layer numbers, got {list(np.asarray(layers))[:8]}")
    arr = arr.astype(int)
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative (0-indexed transformer blocks)")
    if increasing and arr.size > 1 and not np.all(np.diff(arr) > 0):
        raise ValueError(f"{name} must be strictly increasing, got {arr.tolist()[:8]}...")
    if not increasing and len(set(arr.tolist())) != arr.size:
        raise ValueError(f"{name} contains duplicates: {arr.tolist()}")
    return arr


def steps(steps, name: str = "steps") -> np.ndarray:
    arr = vector(name, steps)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite step numbers")
    if arr.size > 1 and not np.all(np.diff(arr) > 0):
        raise ValueError(f"{name} must be strictly increasing, got {arr.tolist()[:8]}")
    return arr


def classifier(classifier_layer, layers: np.ndarray) -> int | None:
    if classifier_layer is None:
        return None
    if isinstance(classifier_layer, bool) or int(classifier_layer) != classifier_layer:
        raise ValueError(f"classifier_layer must be an integer layer number, got {classifier_layer!r}")
    c = int(classifier_layer)
    if not layers.min() <= c <= layers.max():
        raise ValueError(
            f"classifier_layer {c} is outside the plotted layers {layers.min()}..{layers.max()}"
        )
    return c


def grid(name: str, values, n_layers: int, n_steps: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array ({exc})") from None
    if arr.ndim == 1 and n_steps == 1 and arr.shape[0] == n_layers:
        arr = arr[:, None]  # one snapshot given as a flat per-layer vector
    if arr.shape != (n_layers, n_steps):
        hint = "; it looks transposed" if arr.shape == (n_steps, n_layers) else ""
        raise ValueError(
            f"{name} has shape {arr.shape} but must be (len(layers), len(steps)) = "
            f"({n_layers}, {n_steps}){hint}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty; nothing to plot")
    return arr


def probabilities(name: str, x, n: int) -> np.ndarray:
    arr = vector(name, x)
    same_length(name, arr, n, "layers")
    finite = arr[np.isfinite(arr)]
    if finite.size and (finite.min() < 0 or finite.max() > 1 + 1e-6):
        raise ValueError(
            f"{name} must be probabilities in [0, 1], got range {finite.min():g}..{finite.max():g}"
        )
    return arr
