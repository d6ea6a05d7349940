"""The dataset stage: read the dataset params.yaml ``dataset`` describes (AVE: ``avcache.datasets.ave``;
clip formats: ``avcache.datasets.clips``) and write the dataset file.

The dataset file (``avcache.contract.dataset``) fixes the one video order that every cache follows,
and carries labels, splits and class names so training needs nothing else.

    python -m avcache dataset --out features/dataset.h5   # the DVC stage: reads params.yaml `dataset`
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from avcache.contract import params as P
from avcache.contract.dataset import SEGMENTS, Dataset, DatasetError, write_dataset
from avcache.contract.io import counted
from avcache.datasets.ave import load_ave

log = logging.getLogger(__name__)
SHOWN = 10  # ids a message lists before "and N more"


@dataclass
class DatasetParams:
    """params.yaml ``dataset``: what to read and where the media files are."""

    root: str  # ave: the annotation folder; clip formats: the dataset's root folder
    videos: str  # ave: the folder of <id>.<ext>; clip formats: the root (their paths are relative to it)
    format: Literal["ave", "esc50", "urbansound8k", "tut2017", "dcase2021", "csv", "fsdd"] = "ave"
    max_seconds: int = SEGMENTS  # clip formats: longer clips are cut to this many seconds
    # read files that the dataset's own files place outside the folder they are resolved against
    # (a CSV path with .., an absolute path, a symlink leading out; AVE: a <id>.<ext> linking out of videos)
    allow_outside_root: bool = False

    def check(self, where: str) -> None:
        if self.format != "ave" and Path(self.videos) != Path(self.root):
            raise P.ParamsError(
                f"params.yaml: {where}.videos must equal {where}.root for the "
                f"{self.format} format (its file paths are relative to the root)"
            )
        if self.max_seconds < 1:
            raise P.ParamsError(f"params.yaml: {where}.max_seconds must be at least 1")


def load(cfg: DatasetParams) -> Dataset:
    """The dataset ``cfg`` describes, in any supported layout (what the stage writes, and what
    ``avcache plan`` reads when there is no dataset file yet)."""
    if cfg.format == "ave":
        return load_ave(cfg.root, videos=cfg.videos)
    from avcache.datasets.clips import load_clips

    return load_clips(
        cfg.root, cfg.format, cfg.max_seconds, videos=cfg.videos, allow_outside_root=cfg.allow_outside_root
    )


def unfound(ds: Dataset, allow_outside_root: bool = False) -> dict[str, str]:
    """Videos whose file extraction would not find (id -> why, relative to ``ds.videos``), in
    dataset order. Raises ``DatasetError`` for a file found outside ``ds.videos`` (a symlink
    leading out) unless ``allow_outside_root``."""
    from avcache import media
    from avcache.datasets.clips import outside

    folder = Path(ds.videos)
    if not folder.is_dir():
        return dict.fromkeys(ds.video_ids, "no folder")
    out = {}
    listed = {name.lower() for name in os.listdir(folder)}  # a name no case of which is here is missing
    for vid, rel in zip(ds.video_ids, ds.relative_paths()):
        if vid in out:
            continue
        if rel is not None:
            if not (folder / rel).is_file():
                out[vid] = "no such file"
            continue
        if not any(name.lower() in listed for name in [vid, *(vid + ext for ext in media.EXTENSIONS)]):
            out[vid] = "no file"
            continue
        files = media.video_files(folder, vid)
        if len(files) != 1:
            out[vid] = f"{len(files)} files: {' and '.join(sorted(f.name for f in files))}" if files else "no file"
            continue
        found = files[0]
        if not allow_outside_root and (target := outside(folder, found.name)) is not None:
            raise DatasetError(
                f"{found}: video {vid} links outside dataset.videos {folder} (to {target}); "
                "put the file itself there, or set dataset.allow_outside_root: true"
            )
    return out


def check_files(ds: Dataset, allow_outside_root: bool, on_failure: str) -> None:
    """Warn about videos without a file now, not at extraction; under ``extract.on_failure: stop``
    they are an error."""
    missing = unfound(ds, allow_outside_root)
    if not missing:
        return
    ids = list(missing)
    if not Path(ds.videos).is_dir():
        what = f"{ds.videos}: no such folder, so none of the {counted(len(set(ds.video_ids)), 'video')} can be found"
        if on_failure == "stop":
            raise DatasetError(f"{what}; set dataset.videos to the folder of the media files")
        log.warning("%s; set dataset.videos to the folder of the media files", what)
        return
    listed = "; ".join(f"{v} ({missing[v]})" for v in ids[:SHOWN])
    more = f"; and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    n_videos = len(set(ds.video_ids))
    verb = "has" if len(ids) == 1 else "have"
    what = f"{len(ids)} of {counted(n_videos, 'video')} in {ds.videos} {verb} no file to extract: {listed}{more}"
    if on_failure == "stop":
        raise DatasetError(
            f"{what}. extract.on_failure is 'stop': add the files (one per video), remove their rows from the "
            "dataset, or choose 'mask' / 'exclude' (they are then recorded as failed)"
        )
    log.warning("%s. Extraction records them as failed (extract.on_failure: %s)", what, on_failure)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the dataset file to write (features/dataset.h5)")
    a = ap.parse_args(argv)
    try:
        params = P.load()
        cfg = P.from_params(DatasetParams, params.get("dataset"), "dataset")
        on_failure = P.from_params(P.ExtractParams, params.get("extract"), "extract").on_failure
        ds = load(cfg)
        check_files(ds, cfg.allow_outside_root, on_failure)
    except (P.ParamsError, DatasetError) as e:
        raise SystemExit(f"dataset: {e}") from None
    write_dataset(ds, a.out)
    first, *notes = ds.summary()
    print(f"dataset: {cfg.format}: {first} -> {a.out}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
