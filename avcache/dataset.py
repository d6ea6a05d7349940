"""The dataset file (``features/dataset.h5``): the one video order every cache follows.

It carries labels, splits and class names, so training needs nothing else. Rows are
annotation entries (AVE annotates a few videos twice, with different classes).

Layout: ``video_ids`` [N] str, ``labels`` [N, 10, C+1] one-hot uint8 (background last),
``split`` [N] int8 (0 train, 1 val, 2 test, -1 none), ``class_names`` [C+1] str; attributes
``source``, ``videos``, ``video_order_sha256`` and ``sha256:<file>`` for each source file.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from avcache.io import atomic_path

SEGMENTS = 10
SPLITS = ("train", "val", "test")
BACKGROUND = "background"


class DatasetError(ValueError):
    """A dataset file is malformed, inconsistent or missing; the message names file and line."""


def order_hash(video_ids) -> str:
    return hashlib.sha256("\n".join(video_ids).encode()).hexdigest()


@dataclass
class Dataset:
    video_ids: list[str]  # one per row (annotation entry); AVE repeats a few ids
    class_names: list[str]  # events only; background is index len(class_names)
    labels: np.ndarray  # [N, 10, C+1] one-hot uint8
    split: np.ndarray  # [N] index into SPLITS, -1 when the video is in no split
    source: str = ""  # the annotation folder
    videos: str = ""  # the folder holding the videos
    source_files: list[str] = field(default_factory=list)  # hashed into the dataset file

    @property
    def n_classes(self) -> int:
        return len(self.class_names) + 1

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == SPLITS.index(split))

    def shared_across_splits(self) -> list[str]:
        """Videos with entries in more than one split (AVE has some: same clip, other class)."""
        seen = {}
        for vid, s in zip(self.video_ids, self.split):
            seen.setdefault(vid, set()).add(int(s))
        return sorted(v for v, ss in seen.items() if len(ss) > 1)

    @property
    def order_sha256(self) -> str:
        return order_hash(self.video_ids)


def write_dataset(ds: Dataset, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    str_t = h5py.string_dtype()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("video_ids", data=np.array(ds.video_ids, dtype=object), dtype=str_t)
        f.create_dataset("class_names", data=np.array(ds.class_names + [BACKGROUND], dtype=object),
                         dtype=str_t)
        f.create_dataset("labels", data=ds.labels)
        f.create_dataset("split", data=ds.split)
        f.attrs["splits"] = ",".join(SPLITS)
        f.attrs["source"] = ds.source
        f.attrs["videos"] = str(ds.videos)
        f.attrs["video_order_sha256"] = ds.order_sha256
        for p in map(Path, ds.source_files):
            f.attrs[f"sha256:{p.name}"] = hashlib.sha256(p.read_bytes()).hexdigest()


def _strings(values) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else s for s in values]


def read_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file missing; run `dvc repro dataset` first")
    with h5py.File(path, "r") as f:
        names = _strings(f["class_names"][()])
        return Dataset(_strings(f["video_ids"][()]), names[:-1], f["labels"][()], f["split"][()],
                       source=f.attrs["source"], videos=f.attrs["videos"])
