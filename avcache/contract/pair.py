"""An (audio, visual) pair of caches as arrays, with the caches' failure policies applied.

This is what training and evaluation read. A failed video (``valid`` False in either cache)
is *excluded* from every split under the ``exclude`` policy; under ``mask`` it is *masked*:
left out of training and validation but kept in test, so the official test set stays whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avcache.contract.cache import read_features, read_per_second, read_valid
from avcache.contract.dataset import Dataset, read_dataset


@dataclass
class Pair:
    audio: np.ndarray  # [N, T, Da] (a spectrogram cache's frames averaged per second)
    visual: np.ndarray  # [N, T, R, Dv]: R regions (a cache without a grid is one region)
    labels: np.ndarray  # [N, T, C] float32 one-hot
    dataset: Dataset
    excluded: np.ndarray  # [N] bool: in no split
    masked: np.ndarray  # [N] bool: out of train and val, kept in test

    def split(self, name: str) -> np.ndarray:
        """Row indices of a split that may be used: never excluded rows, masked rows only in test."""
        idx = self.dataset.indices(name)
        drop = self.excluded | (self.masked if name != "test" else False)
        return idx[~drop[idx]]


def load_pair(dataset: str | Path | Dataset, audio: str | Path, visual: str | Path) -> Pair:
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    a = read_per_second(audio, ds)  # a spectrogram cache: each second's mean frame
    v = read_features(visual, ds)
    v = v.reshape(v.shape[0], v.shape[1], -1, v.shape[-1]) if v.ndim == 5 else v[:, :, None, :]
    excluded = np.zeros(len(a), bool)
    masked = np.zeros(len(a), bool)
    for path in (audio, visual):
        valid, policy = read_valid(path, ds)
        (excluded if policy == "exclude" else masked)[~valid] = True
    return Pair(a, v, ds.labels.astype(np.float32), ds, excluded, masked & ~excluded)
