"""The dataset file (``features/dataset.h5``): the one video order every cache follows.

It carries labels, splits and class names, so training needs nothing else. Two kinds, one class
each (``read_dataset`` returns the right one):

- ``ave`` (``AveDataset``): event localization. Rows are annotation entries (AVE annotates a few
  videos twice, with different classes); ``labels`` [N, SEGMENTS, C+1] one-hot uint8 per second
  (background last), ``split`` [N] int8 (0 train, 1 val, 2 test, -1 none); videos are found by id.
- ``clips`` (``ClipDataset``): clip classification (ESC-50, UrbanSound8K, acoustic scenes, any
  CSV). ``labels`` [N, C] multi-hot uint8 per clip, ``paths`` [N] (each clip's file, relative to
  ``videos``), ``seconds`` [N] (whole seconds the clip covers: caches hold that many valid rows),
  ``folds`` [N] (the official fold a clip is tested in; 0 = train only, -1 = unused) and
  ``groups`` [N] (the source recording: clips of one source never straddle train and test).

Common: ``video_ids`` [N] str, ``class_names`` str; attributes ``kind``, ``source``,
``videos``, ``video_order_sha256`` and ``sha256:<file>`` for each source file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np

from avcache.contract import h5
from avcache.contract.io import atomic_path, counted

SEGMENTS = 10  # AVE's one-second segments per video; the longest clip a cache holds by default
SPLITS = ("train", "val", "test")
BACKGROUND = "background"


class DatasetError(ValueError):
    """A dataset file is malformed, inconsistent or missing; the message names file and line."""


def read_metadata_text(path: Path) -> str:
    """A metadata file's text (UTF-8, a BOM dropped), or a ``DatasetError`` naming its file and line
    when it is not UTF-8 (binary, Latin-1) or holds a NUL byte (no id or path may contain one)."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save it as UTF-8") from None
    nul = text.find("\0")
    if nul >= 0:
        raise DatasetError(f"{path}:{text.count(chr(10), 0, nul) + 1}: a NUL byte; ids and paths cannot contain one")
    return text


def order_hash(video_ids) -> str:
    return hashlib.sha256("\n".join(video_ids).encode()).hexdigest()


def _strings(values) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else s for s in values]


@dataclass
class Dataset:
    """What both kinds share; a dataset is an ``AveDataset`` or a ``ClipDataset``."""

    kind: ClassVar[str]  # the file's ``kind`` attribute

    video_ids: list[str]  # one per row (AVE: annotation entry, a few ids repeat; clips: the path)
    class_names: list[str]  # the classes a row can carry (AVE: events only, background is extra)
    labels: np.ndarray  # uint8, [N, ...]: see the kinds
    split: np.ndarray  # [N] index into SPLITS, -1 when the row is in no split (clips: folds instead)
    source: str = ""  # the annotation folder
    videos: str = ""  # the folder holding the videos
    source_files: list[str] = field(default_factory=list)  # hashed into the dataset file

    @property
    def n_classes(self) -> int:
        """Outputs of a model trained on this dataset."""
        raise NotImplementedError

    @property
    def max_seconds(self) -> int:
        """The time axis of every cache built on this dataset."""
        raise NotImplementedError

    def row_seconds(self, i: int) -> int:
        """The seconds of row ``i`` its media covers (its cache rows past them are padding)."""
        raise NotImplementedError

    def relative_paths(self) -> list[str | None]:
        """Each row's file relative to ``videos``; None: found by its id (``media.find_video``)."""
        raise NotImplementedError

    @property
    def test_folds(self) -> list[int]:
        """The official folds, each tested once; none for a fixed train / val / test split."""
        raise NotImplementedError

    def summary(self) -> list[str]:
        """What the dataset stage prints: one line, then notes."""
        raise NotImplementedError

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == SPLITS.index(split))

    @property
    def order_sha256(self) -> str:
        return order_hash(self.video_ids)

    def _stored_class_names(self) -> list[str]:
        return self.class_names

    def _write_own(self, f: h5py.File) -> None:
        """The kind's own datasets and attributes, written after the common datasets."""

    @classmethod
    def _read(cls, f: h5py.File, common: dict) -> Dataset:
        raise NotImplementedError


@dataclass
class AveDataset(Dataset):
    """Event localization: ``labels`` [N, SEGMENTS, C+1] one-hot per second, background last."""

    kind: ClassVar[str] = "ave"

    @property
    def n_classes(self) -> int:
        return len(self.class_names) + 1  # + background

    @property
    def max_seconds(self) -> int:
        return SEGMENTS

    def row_seconds(self, i: int) -> int:
        return SEGMENTS

    def relative_paths(self) -> list[str | None]:
        return [None] * len(self.video_ids)

    @property
    def test_folds(self) -> list[int]:
        return []

    def shared_across_splits(self) -> list[str]:
        """Videos with entries in more than one split (AVE has some: same clip, other class)."""
        seen = {}
        for vid, s in zip(self.video_ids, self.split):
            seen.setdefault(vid, set()).add(int(s))
        return sorted(v for v, ss in seen.items() if len(ss) > 1)

    def summary(self) -> list[str]:
        counts = {s: len(self.indices(s)) for s in SPLITS}
        lines = [
            f"{counted(len(self.video_ids), 'entry', 'entries')} ({counted(len(set(self.video_ids)), 'video')}), "
            f"{counted(len(self.class_names), 'class', 'classes')} + background, splits {counts}"
        ]
        shared = self.shared_across_splits()
        if shared:
            lines.append(
                f"note: {counted(len(shared), 'video')} {'has' if len(shared) == 1 else 'have'} entries in more "
                "than one split "
                f"(as distributed), e.g. {', '.join(shared[:3])}"
            )
        return lines

    def _stored_class_names(self) -> list[str]:
        return self.class_names + [BACKGROUND]

    @classmethod
    def _read(cls, f: h5py.File, common: dict) -> AveDataset:
        names = _strings(f["class_names"][()])[:-1]  # background is stored last
        return cls(_strings(f["video_ids"][()]), names, f["labels"][()], f["split"][()], **common)


@dataclass(kw_only=True)
class ClipDataset(Dataset):
    """Clip classification: ``labels`` [N, C] multi-hot per clip; official folds, no split."""

    kind: ClassVar[str] = "clips"

    paths: list[str]  # each row's file relative to ``videos``
    seconds: np.ndarray  # [N] whole seconds each row covers
    folds: np.ndarray  # [N] fold tested in (0: train only, -1: unused)
    groups: list[str]  # [N] source recording
    multi_label: bool = False

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def max_seconds(self) -> int:
        return int(self.seconds.max())

    def row_seconds(self, i: int) -> int:
        return int(self.seconds[i])

    def relative_paths(self) -> list[str | None]:
        return list(self.paths)

    @property
    def test_folds(self) -> list[int]:
        return sorted(int(f) for f in set(self.folds.tolist()) if f > 0)

    def summary(self) -> list[str]:
        return [
            f"{counted(len(self.video_ids), 'clip')}, {counted(len(self.class_names), 'class', 'classes')}, "
            f"folds {self.test_folds}, "
            f"{counted(len(set(self.groups)), 'source')}, 1-{self.max_seconds} s"
        ]

    def _write_own(self, f: h5py.File) -> None:
        h5.create(f, "paths", self.paths)
        h5.create(f, "groups", self.groups)
        h5.create(f, "seconds", np.asarray(self.seconds, np.int16))
        h5.create(f, "folds", np.asarray(self.folds, np.int16))
        f.attrs["multi_label"] = bool(self.multi_label)

    @classmethod
    def _read(cls, f: h5py.File, common: dict) -> ClipDataset:
        return cls(
            _strings(f["video_ids"][()]),
            _strings(f["class_names"][()]),
            f["labels"][()],
            f["split"][()],
            **common,
            paths=_strings(f["paths"][()]),
            seconds=f["seconds"][()],
            folds=f["folds"][()],
            groups=_strings(f["groups"][()]),
            multi_label=bool(f.attrs["multi_label"]),
        )


KINDS: dict[str, type[Dataset]] = {cls.kind: cls for cls in (AveDataset, ClipDataset)}


def write_dataset(ds: Dataset, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        h5.create(f, "video_ids", ds.video_ids)
        h5.create(f, "class_names", ds._stored_class_names())
        h5.create(f, "labels", ds.labels)
        h5.create(f, "split", ds.split)
        ds._write_own(f)
        f.attrs["kind"] = ds.kind
        f.attrs["splits"] = ",".join(SPLITS)
        f.attrs["source"] = ds.source
        f.attrs["videos"] = str(ds.videos)
        f.attrs["video_order_sha256"] = ds.order_sha256
        for p in map(Path, ds.source_files):
            f.attrs[f"sha256:{p.name}"] = hashlib.sha256(p.read_bytes()).hexdigest()


def _kind(path: Path, f: h5py.File) -> type[Dataset]:
    kind = str(f.attrs.get("kind", "ave"))  # files from before clip datasets have no kind
    if kind not in KINDS:
        raise DatasetError(f"{path}: unknown dataset kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind]


def _open(path: Path):
    """The file for reading; a damaged one (truncated, a chunk failing its checksum) raises
    ``DatasetError`` naming it."""
    if not path.is_file():
        raise DatasetError(f"{path}: dataset file missing; run `dvc repro dataset` first")
    return h5.reading(path, DatasetError)


def read_kind(path: str | Path) -> str:
    """The dataset file's kind (``ave`` or ``clips``) from its attributes alone."""
    path = Path(path)
    with _open(path) as f:
        return _kind(path, f).kind


def read_dataset(path: str | Path, videos: str | Path | None = None) -> Dataset:
    """The dataset file as an ``AveDataset`` or a ``ClipDataset``; ``videos`` replaces the folder
    the file names (the same dataset with its media elsewhere)."""
    path = Path(path)
    with _open(path) as f:
        common = dict(source=f.attrs["source"], videos=f.attrs["videos"] if videos is None else str(videos))
        return _kind(path, f)._read(f, common)
