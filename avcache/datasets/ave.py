"""The AVE annotation format: ``Annotations.txt`` (order, classes, per-second labels) and the
split files ``trainSet.txt``, ``valSet.txt``, ``testSet.txt``, read into an ``AveDataset``.

Each line is ``Category&YouTubeID&Quality&StartSec&EndSec`` (optionally below a header line such
as ``HEADER``); an event covers the seconds ``start <= t < end`` of the video's ``SEGMENTS``.
Errors name the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avcache.contract.dataset import SEGMENTS, SPLITS, AveDataset, DatasetError, read_metadata_text

SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
HEADER = "Category&VideoID&Quality&StartTime&EndTime"


@dataclass(frozen=True)
class Annotation:
    category: str
    video_id: str
    quality: str
    start: int
    end: int
    line: int = field(default=0, compare=False)


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
    for lineno, raw in enumerate(read_metadata_text(path).splitlines(), 1):
        line = raw.strip()
        fields = line.split("&")
        if not line or (lineno == 1 and _is_header(fields)):
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 5:
            raise DatasetError(
                f"{where}: expected 5 fields 'Category&VideoID&Quality&StartSec&EndSec', got {len(fields)}: {line!r}"
            )
        category, vid, quality, s, e = (f.strip() for f in fields)
        if not category or not vid:
            raise DatasetError(f"{where}: empty category or video id: {line!r}")
        if "/" in vid or "\\" in vid or vid in (".", ".."):
            raise DatasetError(
                f"{where}: video id {vid!r} is a path, not an id (a video is the file <id>.<ext> in dataset.videos)"
            )
        try:
            start, end = int(s), int(e)
        except ValueError:
            raise DatasetError(f"{where}: start/end must be whole seconds, got {s!r}, {e!r}") from None
        if not 0 <= start <= end <= SEGMENTS:
            raise DatasetError(f"{where}: need 0 <= start <= end <= {SEGMENTS}, got {start}, {end}")
        out.append(Annotation(category, vid, quality, start, end, lineno))
    return out


def segment_labels(ann: Annotation, class_index: dict[str, int], n_classes: int) -> np.ndarray:
    """One-hot [SEGMENTS, C+1]: the event class where start <= t < end, background elsewhere."""
    lab = np.zeros((SEGMENTS, n_classes), np.uint8)
    t = np.arange(SEGMENTS)
    event = (ann.start <= t) & (t < ann.end)
    lab[event, class_index[ann.category]] = 1
    lab[~event, n_classes - 1] = 1
    return lab


def load_ave(root: str | Path, videos: str | Path = "") -> AveDataset:
    """Read an AVE-format folder: Annotations.txt defines order, classes and labels; the split
    files assign splits. ``videos``: the folder of ``<id>.<ext>`` (AVE's annotations and videos
    are distributed apart)."""
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
            raise DatasetError(
                f"{ann_path}:{a.line}: {a.video_id} ({a.category}) is annotated "
                f"twice (also line {anns[row_of[key]].line}); keep one"
            )
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
                raise DatasetError(
                    f"{where}: {a.video_id} ({a.category},{a.start},{a.end}) disagrees with {ann_path.name}"
                )
            if split[i] != -1:
                raise DatasetError(f"{where}: {a.video_id} ({a.category}) is already in the {SPLITS[split[i]]} split")
            split[i] = SPLITS.index(s)

    labels = np.stack([segment_labels(a, class_index, n_classes) for a in anns])
    return AveDataset(
        [a.video_id for a in anns],
        class_names,
        labels,
        split,
        source=str(root),
        videos=str(videos),
        source_files=[str(ann_path)] + [str(root / f) for f in SPLIT_FILES.values()],
    )
