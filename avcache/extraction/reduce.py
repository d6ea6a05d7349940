"""Per-second pooling and channel reductions (mean over channel groups, PCA).

Every reduction acts on the last (channel) axis and is affine, so it commutes with the
per-second time mean; what differs between them is only what a PCA is fitted on:

- ``pca``: one PCA fitted on the training split's per-second vectors (every region of every
  second of every training video), applied to all videos; its state is kept with the cache.
- ``pca_per_video``: the thesis's variant; each video gets a PCA fitted on its own frame-level
  vectors, so no statistics cross videos (and component k means something different per video).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from avcache.contract.dataset import SEGMENTS
from avcache.contract.io import counted


def pool_seconds(values: np.ndarray, times: np.ndarray, seconds: int = SEGMENTS) -> np.ndarray:
    """Mean of the frames whose time falls in [t, t+1) for t = 0..seconds-1."""
    sec = np.floor(times).astype(int)
    if len(sec) != len(values):
        raise ValueError(f"{len(values)} frames but {len(times)} times")
    if ((sec < 0) | (sec >= seconds)).any():
        raise ValueError(f"frame times outside [0, {seconds}) s")
    counts = np.bincount(sec, minlength=seconds)
    if (counts == 0).any():
        raise ValueError(f"no frames in second(s) {np.flatnonzero(counts == 0).tolist()}")
    out = np.zeros((seconds, *values.shape[1:]), np.float64)
    np.add.at(out, sec, values.astype(np.float64))
    out /= counts.reshape(-1, *[1] * (values.ndim - 1))
    return out.astype(np.float32)


class Reduction:
    """Identity; the base of the others. ``dim`` is the output channel count."""

    method = "none"
    needs_fit = False
    per_video = False

    def __init__(self, dim: int | None = None):
        self.dim = dim

    def fit(self, rows: Iterable[np.ndarray]) -> None:
        pass

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def describe(self) -> dict:
        return {"method": self.method, "dim": self.dim}


class ChannelMean(Reduction):
    """Average contiguous channel groups down to ``dim`` channels (groups differ by at most one)."""

    method = "mean"

    def __call__(self, x):
        c = x.shape[-1]
        if self.dim > c:
            raise ValueError(f"mean reduction to {counted(self.dim, 'channel')}, but the layer has only {c}")
        if c % self.dim == 0:
            return x.reshape(*x.shape[:-1], self.dim, c // self.dim).mean(-1)
        groups = np.array_split(np.arange(c), self.dim)
        return np.stack([x[..., g].mean(-1) for g in groups], -1)


def _pca_from_moments(n: int, s1: np.ndarray, s2: np.ndarray, k: int):
    """Top-k principal axes from streamed sums; signs fixed so each axis's largest entry is > 0."""
    if n <= k:
        raise ValueError(f"PCA to {counted(k, 'component')} needs more than {counted(k, 'vector')}, got {n}")
    mean = s1 / n
    cov = (s2 - n * np.outer(mean, mean)) / (n - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:k]
    comps = evecs[:, order].T
    flip = np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])
    comps *= flip[:, None]
    total = max(evals.clip(min=0).sum(), np.finfo(float).tiny)
    return mean, comps, evals[order].clip(min=0) / total


class PCA(Reduction):
    """Exact PCA fitted on streamed rows (float64 moments), so fitting never holds all vectors."""

    method = "pca"
    needs_fit = True

    def fit(self, rows):
        n, s1, s2 = 0, None, None
        for r in rows:
            v = r.reshape(-1, r.shape[-1]).astype(np.float64)
            if s1 is None:
                s1, s2 = np.zeros(v.shape[1]), np.zeros((v.shape[1], v.shape[1]))
            if self.dim > v.shape[1]:
                raise ValueError(f"PCA to {self.dim} channels, but the layer has only {v.shape[1]}")
            n += len(v)
            s1 += v.sum(0)
            s2 += v.T @ v
        if s1 is None:
            raise ValueError("PCA has nothing to fit on (no training videos)")
        self.n_fit = n
        self.mean, self.components, self.explained = _pca_from_moments(n, s1, s2, self.dim)

    def __call__(self, x):
        return ((x.astype(np.float64) - self.mean) @ self.components.T).astype(np.float32)

    def state(self):
        return {"mean": self.mean, "components": self.components, "explained_variance_ratio": self.explained}

    def describe(self):
        return {
            **super().describe(),
            "fitted_on_vectors": self.n_fit,
            "explained_variance": float(self.explained.sum()),
        }


class PCAPerVideo(Reduction):
    """PCA fitted on each video's own frame-level vectors (the thesis's per-file PCA)."""

    method = "pca_per_video"
    per_video = True

    def __call__(self, x):
        v = x.reshape(-1, x.shape[-1]).astype(np.float64)
        if self.dim > v.shape[1]:
            raise ValueError(f"PCA to {self.dim} channels, but the layer has only {v.shape[1]}")
        mean, comps, _ = _pca_from_moments(len(v), v.sum(0), v.T @ v, self.dim)
        return ((x - mean) @ comps.T).astype(np.float32)


METHODS = {r.method: r for r in (Reduction, ChannelMean, PCA, PCAPerVideo)}


def make_reduction(cfg: dict | None) -> Reduction:
    cfg = dict(cfg or {})
    method = cfg.pop("method", "none")
    if method not in METHODS:
        raise ValueError(f"unknown reduction {method!r}; choose one of {sorted(METHODS)}")
    dim = cfg.pop("dim", None)
    if cfg:
        raise ValueError(f"unknown reduction option(s) {sorted(cfg)}")
    if method != "none" and not (isinstance(dim, int) and dim > 0):
        raise ValueError(f"reduction {method!r} needs a positive integer 'dim'")
    return METHODS[method](dim)
