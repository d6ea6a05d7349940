"""The dataset stage: read the dataset params.yaml ``dataset`` describes (AVE: ``avcache.datasets.ave``;
clip formats: ``avcache.datasets.clips``) and write the dataset file.

The dataset file (``avcache.contract.dataset``) fixes the one video order that every cache follows,
and carries labels, splits and class names so training needs nothing else.

    python -m avcache dataset --out features/dataset.h5   # the DVC stage: reads params.yaml `dataset`
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from avcache.contract import params as P
from avcache.contract.dataset import SEGMENTS, Dataset, DatasetError, write_dataset
from avcache.datasets.ave import load_ave


@dataclass
class DatasetParams:
    """params.yaml ``dataset``: what to read and where the media files are."""

    root: str  # ave: the annotation folder; clip formats: the dataset's root folder
    videos: str  # ave: the folder of <id>.<ext>; clip formats: the root (their paths are relative to it)
    format: Literal["ave", "esc10", "esc50", "urbansound8k", "tut2017", "dcase2021", "csv"] = "ave"
    max_seconds: int = SEGMENTS  # clip formats: longer clips are cut to this many seconds

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

    return load_clips(cfg.root, cfg.format, cfg.max_seconds, videos=cfg.videos)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the dataset file to write (features/dataset.h5)")
    a = ap.parse_args(argv)
    try:
        cfg = P.from_params(DatasetParams, P.load().get("dataset"), "dataset")
        ds = load(cfg)
    except (P.ParamsError, DatasetError) as e:
        raise SystemExit(f"dataset: {e}") from None
    write_dataset(ds, a.out)
    first, *notes = ds.summary()
    print(f"dataset: {cfg.format}: {first} -> {a.out}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
