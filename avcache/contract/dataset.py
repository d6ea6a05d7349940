"""The dataset file (``features/dataset.h5``): the one video order every cache follows.

It carries labels, splits and class names, so training needs nothing else. Two kinds:

- ``ave``: event localization. Rows are annotation entries (AVE annotates a few videos twice,
  with different classes); ``labels`` [N, 10, C+1] one-hot uint8 per second (background last),
  ``split`` [N] int8 (0 train, 1 val, 2 test, -1 none); videos are found by id.
- ``clips``: clip classification (ESC-50, UrbanSound8K, acoustic scenes, any CSV). ``labels``
  [N, C] multi-hot uint8 per clip, ``paths`` [N] (each clip's file, relative to ``videos``),
  ``seconds`` [N] (whole seconds the clip covers: caches hold that many valid rows),
  ``folds`` [N] (the official fold a clip is tested in; 0 = train only, -1 = unused) and
  ``groups`` [N] (the source recording: clips of one source never straddle train and test).

Common: ``video_ids`` [N] str, ``class_names`` str; attributes ``kind``, ``source``,
``videos``, ``video_order_sha256`` and ``sha256:<file>`` for each source file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from avcache.contract import h5
from avcache.contract.io import atomic_path

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
    class_names: list[str]  # ave: events only, background is index len(class_names); clips: all
    labels: np.ndarray  # ave: [N, 10, C+1] one-hot; clips: [N, C] multi-hot (uint8)
    split: np.ndarray  # [N] index into SPLITS, -1 when the row is in no split (clips: folds instead)
    source: str = ""  # the annotation folder
    videos: str = ""  # the folder holding the videos
    source_files: list[str] = field(default_factory=list)  # hashed into the dataset file
    kind: str = "ave"  # "ave" | "clips"
    paths: list[str] | None = None  # clips: each row's file relative to ``videos``
    seconds: np.ndarray | None = None  # clips: [N] whole seconds each row covers
    folds: np.ndarray | None = None  # clips: [N] fold tested in (0: train only, -1: unused)
    groups: list[str] | None = None  # clips: [N] source recording
    multi_label: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.class_names) + (self.kind == "ave")

    @property
    def max_seconds(self) -> int:
        """The time axis of every cache built on this dataset."""
        return SEGMENTS if self.seconds is None else int(self.seconds.max())

    def row_seconds(self, i: int) -> int:
        return SEGMENTS if self.seconds is None else int(self.seconds[i])

    @property
    def test_folds(self) -> list[int]:
        return [] if self.folds is None else sorted(int(f) for f in set(self.folds.tolist()) if f > 0)

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
    names = ds.class_names + ([BACKGROUND] if ds.kind == "ave" else [])
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("video_ids", data=h5.utf8_strings(ds.video_ids), fletcher32=True)
        f.create_dataset("class_names", data=h5.utf8_strings(names), fletcher32=True)
        f.create_dataset("labels", data=ds.labels, fletcher32=True)
        f.create_dataset("split", data=ds.split, fletcher32=True)
        if ds.kind == "clips":
            f.create_dataset("paths", data=h5.utf8_strings(ds.paths), fletcher32=True)
            f.create_dataset("groups", data=h5.utf8_strings(ds.groups), fletcher32=True)
            f.create_dataset("seconds", data=np.asarray(ds.seconds, np.int16), fletcher32=True)
            f.create_dataset("folds", data=np.asarray(ds.folds, np.int16), fletcher32=True)
            f.attrs["multi_label"] = bool(ds.multi_label)
        f.attrs["kind"] = ds.kind
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
    with h5.reading(path, DatasetError) as f:
        names = _strings(f["class_names"][()])
        kind = str(f.attrs.get("kind", "ave"))
        common = dict(source=f.attrs["source"], videos=f.attrs["videos"], kind=kind)
        if kind == "ave":
            return Dataset(_strings(f["video_ids"][()]), names[:-1], f["labels"][()], f["split"][()], **common)
        return Dataset(
            _strings(f["video_ids"][()]),
            names,
            f["labels"][()],
            f["split"][()],
            **common,
            paths=_strings(f["paths"][()]),
            seconds=f["seconds"][()],
            folds=f["folds"][()],
            groups=_strings(f["groups"][()]),
            multi_label=bool(f.attrs["multi_label"]),
        )
