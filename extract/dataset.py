"""AVE-format datasets: parse the annotation files, build per-second labels, write the dataset file.

The dataset file (``features/dataset.h5``) fixes the one video order that every cache follows,
and carries labels, splits and class names so training needs nothing else.

    python -m extract.dataset            # the DVC stage: reads params.yaml `dataset`
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from extract import params as P

SEGMENTS = 10
SPLITS = ("train", "val", "test")
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
HEADER = "Category&VideoID&Quality&StartTime&EndTime"
BACKGROUND = "background"


class DatasetError(ValueError):
    """A dataset file is malformed or inconsistent; the message names file and line."""


@dataclass(frozen=True)
class Annotation:
    category: str
    video_id: str
    quality: str
    start: int
    end: int
    line: int = field(default=0, compare=False)


@dataclass
class Dataset:
    video_ids: list[str]  # one per row (annotation entry); AVE repeats a few ids
    class_names: list[str]  # events only; background is index len(class_names)
    labels: np.ndarray  # [N, 10, C+1] one-hot uint8
    split: np.ndarray  # [N] index into SPLITS, -1 when the video is in no split
    source: str = ""
    videos: str = ""

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


def order_hash(video_ids) -> str:
    return hashlib.sha256("\n".join(video_ids).encode()).hexdigest()


def _is_header(fields: list[str]) -> bool:
    """A first line of five fields whose start and end are names, not numbers (any column names)."""
    def number(s):
        try:
            float(s)
            return True
        except ValueError:
            return False
    return len(fields) == 5 and not number(fields[3].strip()) and not number(fields[4].strip())


def parse_annotations(path: str | Path) -> list[Annotation]:
    """Parse one AVE annotation file (``Category&YouTubeID&Quality&StartSec&EndSec`` per line,
    optionally below a header line such as ``HEADER``)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    out = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = raw.strip()
        fields = line.split("&")
        if not line or (lineno == 1 and _is_header(fields)):
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 5:
            raise DatasetError(
                f"{where}: expected 5 fields 'Category&VideoID&Quality&StartSec&EndSec', "
                f"got {len(fields)}: {line!r}")
        category, vid, quality, s, e = (f.strip() for f in fields)
        if not category or not vid:
            raise DatasetError(f"{where}: empty category or video id: {line!r}")
        try:
            start, end = int(s), int(e)
        except ValueError:
            raise DatasetError(f"{where}: start/end must be whole seconds, got {s!r}, {e!r}") from None
        if not 0 <= start <= end <= SEGMENTS:
            raise DatasetError(f"{where}: need 0 <= start <= end <= {SEGMENTS}, got {start}, {end}")
        out.append(Annotation(category, vid, quality, start, end, lineno))
    return out


def segment_labels(ann: Annotation, class_index: dict[str, int], n_classes: int) -> np.ndarray:
    """One-hot [10, C+1]: the event class where start <= t < end, background elsewhere."""
    lab = np.zeros((SEGMENTS, n_classes), np.uint8)
    t = np.arange(SEGMENTS)
    event = (ann.start <= t) & (t < ann.end)
    lab[event, class_index[ann.category]] = 1
    lab[~event, n_classes - 1] = 1
    return lab


def load_ave(root: str | Path) -> Dataset:
    """Read an AVE-format folder: Annotations.txt defines order, classes and labels; the split files assign splits."""
    root = Path(root)
    ann_path = root / "Annotations.txt"
    anns = parse_annotations(ann_path)
    if not anns:
        raise DatasetError(f"{ann_path}: no annotations")
    # AVE annotates some YouTube videos twice, with different classes (45 in the real files):
    # rows are annotation entries, keyed by (video, class), as in the authors' feature files.
    row_of = {}
    for i, a in enumerate(anns):
        key = (a.video_id, a.category)
        if key in row_of:
            raise DatasetError(f"{ann_path}:{a.line}: {a.video_id} ({a.category}) is annotated "
                               f"twice (also line {anns[row_of[key]].line}); keep one")
        row_of[key] = i
    ids = {a.video_id for a in anns}
    class_names = list(dict.fromkeys(a.category for a in anns))
    class_index = {c: i for i, c in enumerate(class_names)}
    n_classes = len(class_names) + 1

    split = np.full(len(anns), -1, np.int8)
    for s, fname in SPLIT_FILES.items():
        spath = root / fname
        for a in parse_annotations(spath):
            where = f"{spath}:{a.line}"
            if a.category not in class_index:
                raise DatasetError(f"{where}: unknown class {a.category!r} (not in {ann_path.name})")
            if a.video_id not in ids:
                raise DatasetError(f"{where}: video {a.video_id} is not in {ann_path.name}")
            i = row_of.get((a.video_id, a.category))
            if i is None or (a.start, a.end) != (anns[i].start, anns[i].end):
                raise DatasetError(f"{where}: {a.video_id} ({a.category},{a.start},{a.end}) "
                                   f"disagrees with {ann_path.name}")
            if split[i] != -1:
                raise DatasetError(f"{where}: {a.video_id} ({a.category}) is already in the "
                                   f"{SPLITS[split[i]]} split")
            split[i] = SPLITS.index(s)

    labels = np.stack([segment_labels(a, class_index, n_classes) for a in anns])
    return Dataset([a.video_id for a in anns], class_names, labels, split, source=str(root))


def write_dataset(ds: Dataset, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    str_t = h5py.string_dtype()
    with h5py.File(tmp, "w") as f:
        f.create_dataset("video_ids", data=np.array(ds.video_ids, dtype=object), dtype=str_t)
        f.create_dataset("class_names", data=np.array(ds.class_names + [BACKGROUND], dtype=object),
                         dtype=str_t)
        f.create_dataset("labels", data=ds.labels)
        f.create_dataset("split", data=ds.split)
        f.attrs["splits"] = ",".join(SPLITS)
        f.attrs["source"] = ds.source
        f.attrs["videos"] = str(ds.videos)
        f.attrs["video_order_sha256"] = ds.order_sha256
        for name in ["Annotations.txt", *SPLIT_FILES.values()]:
            p = Path(ds.source) / name
            if p.is_file():
                f.attrs[f"sha256:{name}"] = hashlib.sha256(p.read_bytes()).hexdigest()
    tmp.replace(path)


def read_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset file missing; run `dvc repro dataset` first")
    with h5py.File(path, "r") as f:
        ids = [s.decode() if isinstance(s, bytes) else s for s in f["video_ids"][()]]
        names = [s.decode() if isinstance(s, bytes) else s for s in f["class_names"][()]]
        return Dataset(ids, names[:-1], f["labels"][()], f["split"][()],
                       source=f.attrs["source"], videos=f.attrs["videos"])


def main() -> None:
    cfg = P.load()["dataset"]
    try:
        ds = load_ave(cfg["root"])
    except DatasetError as e:  # the message names file and line: a traceback adds nothing
        raise SystemExit(f"dataset: {e}") from None
    ds.videos = cfg["videos"]
    write_dataset(ds, P.DATASET_FILE)
    counts = {s: len(ds.indices(s)) for s in SPLITS}
    print(f"dataset: {len(ds.video_ids)} entries ({len(set(ds.video_ids))} videos), "
          f"{len(ds.class_names)} classes + background, splits {counts} -> {P.DATASET_FILE}")
    shared = ds.shared_across_splits()
    if shared:
        print(f"note: {len(shared)} videos have entries in more than one split "
              f"(as distributed), e.g. {', '.join(shared[:3])}")


if __name__ == "__main__":
    main()
