"""Subspaces of the residual stream and the edits of a block's output that remove them (docs/science.md "Ablation").

The logit lens reads token w from a block output h as logit_w(h) = d_w . h / rms(h), with d_w = g * u_w (the final
norm's gain times the unembedding row; ``LogitLens.readout_directions``). So everything the lens reads about the
class words lies in the *class-readout subspace* span{d_w : w a class token}:

* ``"full"``: span{d_w} (dimension 4): after removing it every class logit's linear part is 0, so the lens reads
  neither which class word nor whether any class word is emitted;
* ``"centred"``: span{d_w - mean_w d_w} (dimension 3): what the class-restricted argmax reads (it compares the four
  logits, so a common shift does not change it); after removing it the four class logits are equal.

A subspace is held as an orthonormal basis Q (D, k), from a QR decomposition in float64. Removing it is the orthogonal
projection h <- h - (h Q) Q^T at every position of the block output (``project_out``), or, for mean-ablation, the
component in the subspace replaced by the component of a fixed mean state (``mean_replace``). The random control
draws subspaces of the same dimension uniformly (QR of a seeded Gaussian matrix: Haar-distributed).
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import numpy as np

from lazarus_nb.model.hooks import Edit

SUBSPACES: tuple[str, ...] = ("full", "centred")
"""The class-readout subspaces: every class direction, or only their differences from their mean."""


def orthonormal(vectors: np.ndarray) -> np.ndarray:
    """(D, k) orthonormal basis of the span of the columns of ``vectors`` (D, k), float64 QR; ValueError when the
    columns are not linearly independent (the span would be smaller than k)."""
    q, r = np.linalg.qr(np.asarray(vectors, dtype=np.float64))
    diag = np.abs(np.diag(r))
    if diag.size == 0 or diag.min() <= 1e-9 * diag.max():
        raise ValueError(f"the {vectors.shape[1]} vectors are not linearly independent")
    return q


def class_basis(directions: np.ndarray, subspace: str = "full") -> np.ndarray:
    """(D, k) orthonormal basis of the class-readout subspace of ``directions`` (K, D), the rows d_w: ``"full"``
    spans every d_w (k = K), ``"centred"`` the d_w - mean d_w (k = K - 1: the centred rows sum to zero, so one is
    dropped; the span of the others is the same)."""
    d = np.asarray(directions, dtype=np.float64)
    if subspace == "full":
        return orthonormal(d.T)
    if subspace == "centred":
        return orthonormal((d - d.mean(axis=0))[:-1].T)
    raise ValueError(f"unknown subspace {subspace!r}; use one of {', '.join(SUBSPACES)}")


def random_bases(width: int, dim: int, draws: int, seed: int = 0) -> list[np.ndarray]:
    """``draws`` orthonormal bases (width, dim) of uniformly random subspaces (QR of standard Gaussian matrices, one
    seeded generator), the same for every call with the same arguments."""
    rng = np.random.default_rng(seed)
    return [orthonormal(rng.standard_normal((width, dim))) for _ in range(draws)]


def _basis(q: np.ndarray) -> mx.array:
    return mx.array(np.asarray(q, dtype=np.float32))


def project_out(basis: np.ndarray) -> Edit:
    """The edit h -> h - (h Q) Q^T (the orthogonal projection off span Q), at every position."""
    q = _basis(basis)

    def edit(h: mx.array) -> mx.array:
        return h - (h @ q) @ q.T

    return edit


def mean_replace(basis: np.ndarray, mean: np.ndarray) -> Edit:
    """The edit h -> h - (h Q) Q^T + (m Q) Q^T: the component in span Q replaced by that of the mean state m (D,)
    (mean-ablation), at every position."""
    q = _basis(basis)
    kept = (mx.array(np.asarray(mean, dtype=np.float32)) @ q) @ q.T

    def edit(h: mx.array) -> mx.array:
        return h - (h @ q) @ q.T + kept

    return edit


def dimension(subspace: str, classes: int) -> int:
    """The dimension of a class-readout subspace of ``classes`` class tokens."""
    return classes if subspace == "full" else classes - 1


def describe(subspace: str, words: Sequence[str]) -> str:
    """The subspace in words, e.g. ``span{g*u_w : w in multiply, add, subtract, divide}``."""
    inner = "g*u_w" if subspace == "full" else "g*(u_w - mean u)"
    return f"span{{{inner} : w in {', '.join(words)}}}"
