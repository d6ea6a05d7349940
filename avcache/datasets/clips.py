"""Clip-classification datasets, read in their own published layouts, as a ``clips`` dataset file.

| format | files read | folds | source (never split) |
|---|---|---|---|
| ``esc50`` | ``meta/esc50.csv`` + ``audio/`` | 5 official | ``src_file`` |
| ``urbansound8k`` | ``metadata/UrbanSound8K.csv`` + ``audio/foldK/`` | 10 official | ``fsID`` |
| ``tut2017`` | ``meta.txt`` + ``evaluation_setup/foldK_{train,evaluate}.txt`` | 4 official | recording |
| ``dcase2021`` | ``meta.csv`` + ``evaluation_setup/fold1_{train,evaluate}.csv`` | train / evaluate | location |
| ``csv`` | ``<root>/clips.csv``: ``path,label[,fold][,group]`` | given, else 5 by group | ``group``, else the file |
| ``fsdd`` | ``recordings/{digit}_{speaker}_{take}.wav`` | takes 0-4 test / train | the recording |

A CSV label may hold several classes separated by ``;`` (a multi-label task). Every clip's length
is read from its file's header, rounded up to whole seconds (at most ``max_seconds``): caches keep
that many rows per clip and training masks the rest. The readers are plain parsers of the
published metadata rather than soundata's loaders: those fetch an index file from Zenodo on first
use (it is not in the wheel), check every file against the complete official release, and pull
pandas, jams and py7zr; these work offline and on any subset.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avcache.contract.dataset import SEGMENTS, ClipDataset, DatasetError, read_metadata_text
from avcache.contract.io import counted

CSV_NAME = "clips.csv"
DEFAULT_FOLDS = 5
LENGTH_SLACK = 0.1  # seconds past a whole second that do not make another row (AAC adds ~0.05 s)


@dataclass
class Row:
    path: str  # relative to the dataset root
    labels: list[str]
    fold: int  # tested in this fold; 0: train only; -1: unused
    group: str
    where: str  # file:line, for errors
    seconds: float | None = None  # what the metadata says, when the file cannot be read


def _read_table(path: Path, delimiter: str, header: list[str] | None = None):
    """(line number, row as dict or list) for each non-empty line; ``header`` checks line 1."""
    if not path.is_file():
        raise DatasetError(f"{path}: not found")
    lines = list(csv.reader(io.StringIO(read_metadata_text(path), newline=""), delimiter=delimiter))
    if header is not None:
        got = [h.strip() for h in lines[0]] if lines else []
        missing = [h for h in header if h not in got]
        if missing:
            raise DatasetError(f"{path}:1: header lacks column(s) {missing}; found {got}")
        return [
            (n, dict(zip(got, (v.strip() for v in row))))
            for n, row in enumerate(lines[1:], 2)
            if any(v.strip() for v in row)
        ]
    return [(n, [v.strip() for v in row]) for n, row in enumerate(lines, 1) if any(v.strip() for v in row)]


def _int(value: str, where: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"{where}: {what} must be a whole number, got {value!r}") from None


def read_esc50(root: Path) -> tuple[list[Row], list[str]]:
    meta = root / "meta" / "esc50.csv"
    rows, names = [], {}
    for n, r in _read_table(meta, ",", ["filename", "fold", "target", "category", "src_file"]):
        where = f"{meta}:{n}"
        target = _int(r["target"], where, "target")
        if names.setdefault(target, r["category"]) != r["category"]:
            raise DatasetError(f"{where}: target {target} is {r['category']!r} here but {names[target]!r} before")
        rows.append(
            Row(f"audio/{r['filename']}", [r["category"]], _int(r["fold"], where, "fold"), r["src_file"], where, 5.0)
        )
    return rows, [names[k] for k in sorted(names)]


def read_urbansound8k(root: Path) -> tuple[list[Row], list[str]]:
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows, names = [], {}
    for n, r in _read_table(meta, ",", ["slice_file_name", "fsID", "start", "end", "fold", "classID", "class"]):
        where = f"{meta}:{n}"
        cid, fold = _int(r["classID"], where, "classID"), _int(r["fold"], where, "fold")
        if names.setdefault(cid, r["class"]) != r["class"]:
            raise DatasetError(f"{where}: classID {cid} is {r['class']!r} here but {names[cid]!r} before")
        try:
            length = float(r["end"]) - float(r["start"])
        except ValueError:
            raise DatasetError(f"{where}: start/end must be numbers, got {r['start']!r}, {r['end']!r}") from None
        rows.append(Row(f"audio/fold{fold}/{r['slice_file_name']}", [r["class"]], fold, r["fsID"], where, length))
    return rows, [names[k] for k in sorted(names)]


def _evaluation_folds(
    root: Path, pattern: str, delimiter: str, header: list[str] | None, folds: list[int]
) -> dict[str, tuple[int, str, str]]:
    """file -> (fold it is evaluated in, its label there, where), from the evaluate lists."""
    out = {}
    for k in folds:
        path = root / "evaluation_setup" / pattern.format(k=k)
        for n, r in _read_table(path, delimiter, header):
            name, label = (r["filename"], r["scene_label"]) if header else (r[0], r[1] if len(r) > 1 else "")
            where = f"{path}:{n}"
            if name in out:
                raise DatasetError(f"{where}: {name} is evaluated in fold {out[name][0]} already ({out[name][2]})")
            out[name] = (k, label, where)
    return out


def _check_train_lists(root: Path, pattern: str, delimiter: str, header, folds, evaluated) -> None:
    """A file in fold k's train list must not be evaluated in fold k."""
    for k in folds:
        path = root / "evaluation_setup" / pattern.format(k=k)
        for n, r in _read_table(path, delimiter, header):
            name = r["filename"] if header else r[0]
            if evaluated.get(name, (None,))[0] == k:
                raise DatasetError(f"{path}:{n}: {name} is in fold {k}'s train list and its evaluate list")


def read_tut2017(root: Path) -> tuple[list[Row], list[str]]:
    meta = root / "meta.txt"
    folds = [1, 2, 3, 4]
    evaluated = _evaluation_folds(root, "fold{k}_evaluate.txt", "\t", None, folds)
    _check_train_lists(root, "fold{k}_train.txt", "\t", None, folds, evaluated)
    rows = []
    for n, r in _read_table(meta, "\t"):
        where = f"{meta}:{n}"
        if len(r) < 2:
            raise DatasetError(f"{where}: expected 'file<TAB>scene[<TAB>identifier]', got {r!r}")
        group = r[2] if len(r) > 2 and r[2] else Path(r[0]).stem.split("_")[0]
        fold, label, ewhere = evaluated.get(r[0], (-1, r[1], where))
        if label != r[1]:
            raise DatasetError(f"{ewhere}: {r[0]} is {label!r} there but {r[1]!r} in {where}")
        rows.append(Row(r[0], [r[1]], fold, group, where, 10.0))
    return rows, sorted({r.labels[0] for r in rows})


def read_dcase2021(root: Path) -> tuple[list[Row], list[str]]:
    meta = root / "meta.csv"
    header = ["filename", "scene_label"]
    evaluated = _evaluation_folds(root, "fold{k}_evaluate.csv", "\t", header, [1])
    trained = {r["filename"] for _, r in _read_table(root / "evaluation_setup" / "fold1_train.csv", "\t", header)}
    _check_train_lists(root, "fold{k}_train.csv", "\t", header, [1], evaluated)
    rows = []
    for n, r in _read_table(meta, "\t", ["filename", "scene_label", "identifier"]):
        where = f"{meta}:{n}"
        fold, label, ewhere = evaluated.get(
            r["filename"], (0 if r["filename"] in trained else -1, r["scene_label"], where)
        )
        if label != r["scene_label"]:
            raise DatasetError(f"{ewhere}: {r['filename']} is {label!r} there but {r['scene_label']!r} in {where}")
        rows.append(Row(r["filename"], [r["scene_label"]], fold, r["identifier"], where, 10.0))
    return rows, sorted({r.labels[0] for r in rows})


def read_csv(root: Path) -> tuple[list[Row], list[str]]:
    path = root / CSV_NAME
    table = _read_table(path, ",")
    if not table:
        raise DatasetError(f"{path}: no clips")
    first = [c.lower() for c in table[0][1]]
    columns = first if first[:2] == ["path", "label"] else ["path", "label", "fold", "group"][: len(first)]
    if columns is first:
        table = table[1:]
    unknown = set(columns) - {"path", "label", "fold", "group"}
    if unknown:
        raise DatasetError(f"{path}:1: unknown column(s) {sorted(unknown)}; columns are path,label[,fold][,group]")
    rows = []
    for n, values in table:
        where = f"{path}:{n}"
        if len(values) != len(columns):
            raise DatasetError(
                f"{where}: expected {counted(len(columns), 'field')} ({','.join(columns)}), got {len(values)}"
            )
        r = dict(zip(columns, values))
        labels = [x.strip() for x in r["label"].split(";") if x.strip()]
        if not r["path"] or not labels:
            raise DatasetError(f"{where}: empty path or label")
        group = r.get("group") or r["path"]
        fold = (
            _int(r["fold"], where, "fold")
            if "fold" in r
            else 1 + int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % DEFAULT_FOLDS
        )
        rows.append(Row(r["path"], labels, fold, group, where))
    return rows, sorted({x for r in rows for x in r.labels})


FSDD_TEST_TAKES = 5  # takes 0-4 of every digit and speaker: the official test set


def read_fsdd(root: Path) -> tuple[list[Row], list[str]]:
    """The Free Spoken Digit Dataset: ``recordings/{digit}_{speaker}_{take}.wav`` under ``root``.

    Its official split is by take: 0-4 test (fold 1), the rest train (fold 0). Every speaker is in
    both, so the split is not speaker-independent; each recording is its own source (group), so
    the validation clips (a tenth of the training recordings, by name) are, like the test clips,
    other takes of seen speakers. A speaker group would hold out whole speakers: with FSDD's six,
    the name hash puts all of one speaker's training takes (theo's) in validation."""
    folder = root / "recordings"
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not found (dataset.root must be the folder holding recordings/)")
    rows = []
    for path in sorted(folder.glob("*.wav")):
        parts = path.stem.split("_")
        if len(parts) != 3 or not (parts[0].isdigit() and len(parts[0]) == 1) or not parts[2].isdigit() or not parts[1]:
            raise DatasetError(f"{path}: name is not {{digit}}_{{speaker}}_{{take}}.wav; move it out of {folder}")
        fold = 1 if int(parts[2]) < FSDD_TEST_TAKES else 0
        rows.append(Row(f"recordings/{path.name}", [parts[0]], fold, path.stem, str(path)))
    return rows, sorted({r.labels[0] for r in rows})


FORMATS = {
    "esc50": read_esc50,
    "urbansound8k": read_urbansound8k,
    "tut2017": read_tut2017,
    "dcase2021": read_dcase2021,
    "csv": read_csv,
    "fsdd": read_fsdd,
}


def probe_seconds(path: Path) -> float | None:
    """The file's length from its headers (no decoding), or None when it cannot be read."""
    import av

    from avcache import media

    try:
        with av.open(media.local_url(path), container_options=media.LOCAL_ONLY) as c:
            if c.duration:
                return c.duration / 1_000_000
            lengths = [float(s.duration * s.time_base) for s in c.streams if s.duration]
            return max(lengths) if lengths else None
    except (media.MediaError, av.error.FFmpegError, OSError, UnicodeDecodeError):
        return None


def outside(folder: Path, relative: str) -> Path | None:
    """Where ``folder / relative`` really is (symlinks followed) when that is not inside
    ``folder`` (``..``, an absolute path, a link out of it); None when it is inside."""
    target = (folder / relative).resolve()
    return None if target.is_relative_to(folder.resolve()) else target


def load_clips(
    root: str | Path,
    fmt: str,
    max_seconds: int = SEGMENTS,
    videos: str | Path | None = None,
    allow_outside_root: bool = False,
) -> ClipDataset:
    """Read a clip dataset of format ``fmt`` under ``root`` (see the module's table). ``videos``:
    the folder the clips' paths are relative to (the same folder as ``root``; default ``root``).
    A path that leads outside ``root`` is refused unless ``allow_outside_root``."""
    root = Path(root)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown clip dataset format {fmt!r}; choose one of {sorted(FORMATS)}")
    rows, names = FORMATS[fmt](root)
    if not rows:
        raise DatasetError(f"{root}: no clips in the {fmt} metadata")
    seen = {}
    for r in rows:
        if r.path in seen:
            raise DatasetError(f"{r.where}: {r.path} is listed twice (also {seen[r.path]})")
        seen[r.path] = r.where
        if not allow_outside_root and (target := outside(root, r.path)) is not None:
            raise DatasetError(
                f"{r.where}: path {r.path!r} leads outside the dataset root {root} (to {target}); "
                "move the file under the root, or set dataset.allow_outside_root: true to read it there"
            )
    fold_of_group = {}
    for r in rows:
        if r.fold > 0:
            other = fold_of_group.setdefault(r.group, (r.fold, r.where))
            if other[0] != r.fold:
                raise DatasetError(
                    f"{r.where}: source {r.group!r} is in fold {r.fold} here and in fold "
                    f"{other[0]} at {other[1]}: clips of one source must stay in one fold"
                )
    index = {c: k for k, c in enumerate(names)}
    for r in rows:
        unknown = [x for x in r.labels if x not in index]
        if unknown:
            raise DatasetError(f"{r.where}: unknown class(es) {unknown}")
    labels = np.zeros((len(rows), len(names)), np.uint8)
    for i, r in enumerate(rows):
        labels[i, [index[x] for x in r.labels]] = 1
    lengths = [probe_seconds(root / r.path) or r.seconds for r in rows]
    # a clip that cannot be read fails at extraction; it must not widen every cache's time axis
    longest = max((x for x in lengths if x), default=max_seconds)
    seconds = np.array([min(max_seconds, max(1, math.ceil((x or longest) - LENGTH_SLACK))) for x in lengths], np.int16)
    metadata = {
        "esc50": ["meta/esc50.csv"],
        "urbansound8k": ["metadata/UrbanSound8K.csv"],
        "tut2017": ["meta.txt"],
        "dcase2021": ["meta.csv"],
        "csv": [CSV_NAME],
        "fsdd": [],  # the file names are the metadata
    }[fmt]
    return ClipDataset(
        [r.path for r in rows],
        names,
        labels,
        np.full(len(rows), -1, np.int8),
        source=str(root),
        videos=str(Path(videos) if videos is not None else root),
        source_files=[str(root / m) for m in metadata],
        paths=[r.path for r in rows],
        seconds=seconds,
        folds=np.array([r.fold for r in rows], np.int16),
        groups=[r.group for r in rows],
        multi_label=bool((labels.sum(1) > 1).any()),
    )
