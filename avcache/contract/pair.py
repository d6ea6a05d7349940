"""An (audio, visual) pair of caches as arrays, with the caches' failure policies applied.

This is what training and evaluation read. A failed video (``valid`` False in either cache)
is *excluded* from every split under the ``exclude`` policy; under ``mask`` it is *masked*:
left out of training and validation but kept in test, so the official test set stays whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avcache.contract.cache import CacheError, read_features, read_modality, read_per_second, read_valid
from avcache.contract.dataset import Dataset, read_dataset


@dataclass
class Pair:
    audio: np.ndarray  # [N, T, Da] (a spectrogram cache's frames averaged per second)
    visual: np.ndarray  # [N, T, R, Dv]: R regions (a cache without a grid is one region)
    labels: np.ndarray  # [N, T, C] float32 one-hot
    dataset: Dataset
    excluded: np.ndarray  # [N] bool: in no split
    masked: np.ndarray  # [N] bool: out of train and val, kept in test

    @property
    def shapes(self) -> dict:
        return shapes(self.audio, self.visual, self.labels)

    def split(self, name: str) -> np.ndarray:
        """Row indices of a split that may be used: never excluded rows, masked rows only in test."""
        idx = self.dataset.indices(name)
        drop = self.excluded | (self.masked if name != "test" else False)
        return idx[~drop[idx]]


def shapes(audio, visual, labels) -> dict:
    """What a model built for these arrays (numpy or torch) takes; a checkpoint records the same."""
    return {
        "audio_dim": audio.shape[-1],
        "visual_dim": visual.shape[-1],
        "regions": visual.shape[2],
        "n_classes": labels.shape[-1],
    }


def check_modality(path: str | Path, x: np.ndarray, expected: str, other: str | Path | None) -> None:
    """A visual cache given as the audio one (or the reverse) is one line, not a model's error:
    by the cache's own ``modality`` attribute, else by its shape (audio is [N, T, d])."""
    found = read_modality(path)
    if found is None and expected == "audio" and x.ndim == 5:
        found = "visual"
    if x.ndim not in ((3,) if expected == "audio" else (3, 5)) or (found is not None and found != expected):
        shape = " x ".join(map(str, x.shape))
        raise CacheError(
            f"{path}: a {found or 'feature'} cache ({shape}) given as the {expected} one; "
            f"are the audio and visual caches swapped (the other is {other})? check params.yaml `audio` / "
            "`visual` and the stage's --audio / --visual"
        )


def load_pair(dataset: str | Path | Dataset, audio: str | Path | None, visual: str | Path | None) -> Pair:
    """The caches as arrays; a modality without a cache (None: not in params.yaml ``inputs``) is
    a zero feature of width 1, which a model that does not read it never looks at."""
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    n, t = ds.labels.shape[:2]
    a = np.zeros((n, t, 1), np.float32)
    if audio is not None:
        a = read_per_second(audio, ds)  # a spectrogram cache: each second's mean frame
        check_modality(audio, a, "audio", visual)
    v = np.zeros((n, t, 1), np.float32)
    if visual is not None:
        v = read_features(visual, ds)
        check_modality(visual, v, "visual", audio)
    v = v.reshape(v.shape[0], v.shape[1], -1, v.shape[-1]) if v.ndim == 5 else v[:, :, None, :]
    excluded = np.zeros(len(a), bool)
    masked = np.zeros(len(a), bool)
    for path in (p for p in (audio, visual) if p is not None):
        valid, policy = read_valid(path, ds)
        (excluded if policy == "exclude" else masked)[~valid] = True
    return Pair(a, v, ds.labels.astype(np.float32), ds, excluded, masked & ~excluded)
