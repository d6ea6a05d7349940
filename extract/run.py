"""The extraction stage: one extractor over every video of the dataset, into one HDF5 cache.

    python -m extract.run audio musicnn      # reads params.yaml `extractors.musicnn`

Each video is decoded once and reduced to per-second features (mean of the frames in [t, t+1)).
A reduction fitted on data (``pca``) is fitted on the training split only: those videos are
extracted first into a scratch file, the PCA is fitted, then every row is projected and written.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import platform
import sys
from pathlib import Path

import av
import h5py
import numpy as np
from tqdm import tqdm

from extract import extractors, params as P
from extract.cache import CacheWriter
from extract.dataset import Dataset, read_dataset
from extract.media import MediaError
from extract.reduce import Reduction, make_reduction, pool_seconds

ROOT = Path(__file__).resolve().parent.parent
CODE = ["extract/run.py", "extract/media.py", "extract/cache.py", "extract/reduce.py",
        "extract/extractors/base.py"]


def code_sha256(name: str) -> str:
    """Hash of the source files that determine this extractor's cache (the stage's code deps)."""
    h = hashlib.sha256()
    shared = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "extract/extractors/shared").glob("*.py"))
    for rel in CODE + shared + [f"extract/extractors/{name}.py"]:
        p = ROOT / rel
        if p.is_file():
            h.update(rel.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def video_path(videos: str | Path, vid: str) -> Path:
    return Path(videos) / f"{vid}.mp4"


def extract_video(extractor, reduction: Reduction, path: Path) -> tuple[np.ndarray, dict]:
    """Per-second features [10, ...] for one video: a pure function of the file and the config."""
    decoded, facts = extractor.decode(path)
    values, times = extractor(decoded)
    if reduction.per_video:
        values = reduction(values)
    return pool_seconds(values, times), facts


class _Rows:
    """Per-second rows of the fit set, kept in a scratch HDF5 file until the fit is done."""

    def __init__(self, path: Path, n: int):
        self.path, self.n, self.f = path, n, None
        path.parent.mkdir(parents=True, exist_ok=True)

    def put(self, j, row, facts):
        if self.f is None:
            self.f = h5py.File(self.path, "w")
            self.f.create_dataset("rows", (self.n, *row.shape), np.float32, chunks=(1, *row.shape))
            self.facts = [None] * self.n
        self.f["rows"][j] = row
        self.facts[j] = facts

    def get(self, j):
        return self.f["rows"][j], self.facts[j]

    def __iter__(self):
        for j in range(self.n):
            yield self.f["rows"][j]

    def close(self):
        if self.f is not None:
            self.f.close()
        self.path.unlink(missing_ok=True)


def run(modality: str, name: str, options: dict, dataset: Dataset, videos: str | Path,
        out: Path, progress: bool = True) -> Path:
    options = dict(options)
    reduction = make_reduction(options.pop("reduction", None))
    extractor = extractors.create(name, options)
    if extractor.modality != modality:
        raise ValueError(f"extractor {name} is {extractor.modality}, listed under {modality}")
    ids = dataset.video_ids
    fit_idx = dataset.indices("train") if reduction.needs_fit else np.array([], int)
    rest = np.setdiff1d(np.arange(len(ids)), fit_idx)
    order = [int(i) for i in np.concatenate([fit_idx, rest])]
    bar = tqdm(total=len(ids), desc=f"{modality}/{name}", unit="video", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)

    def one(i):
        path = video_path(videos, ids[i])
        try:
            row, facts = extract_video(extractor, reduction, path)
        except MediaError as e:
            raise MediaError(f"video {ids[i]}: {e}") from None
        bar.update(1)
        return row, facts

    provenance = {**extractor.describe(), "name": name, "modality": modality,
                  "fit_split": "train" if reduction.needs_fit else None,
                  "per_second": "mean of the frames whose time is in [t, t+1)",
                  "code_sha256": code_sha256(name), "dataset_order_sha256": dataset.order_sha256,
                  "versions_io": {"numpy": np.__version__, "h5py": h5py.__version__,
                                  "av": av.__version__, "python": platform.python_version()}}
    scratch = _Rows(out.parent / f".{out.stem}.fit.h5", len(fit_idx))
    fit_pos = {int(i): j for j, i in enumerate(fit_idx)}

    def rows():
        for i in order:
            row, facts = scratch.get(fit_pos[i]) if i in fit_pos else one(i)
            yield i, (row if reduction.per_video else reduction(row)), facts

    try:
        for j, i in enumerate(fit_idx):
            scratch.put(j, *one(i))
        reduction.fit(scratch)
        provenance["reduction"] = reduction.describe()
        it = rows()
        first = next(it)
        with CacheWriter(out, ids, first[1].shape, provenance) as writer:
            for i, row, facts in itertools.chain([first], it):
                writer.write(i, row, facts)
            writer.save_state("reduction", reduction.state())
    finally:
        scratch.close()
        bar.close()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modality", choices=["audio", "visual"])
    ap.add_argument("name")
    a = ap.parse_args(argv)
    cfg = P.load()
    dataset = read_dataset(P.DATASET_FILE)
    options = (cfg.get("extractors") or {}).get(a.name)
    if options is None:
        raise SystemExit(f"params.yaml has no extractors.{a.name} section")
    try:
        out = run(a.modality, a.name, options, dataset, dataset.videos, P.cache_path(a.modality, a.name))
    except (extractors.WeightsNotFound, MediaError, ValueError) as e:
        raise SystemExit(f"extract {a.modality}/{a.name}: {e}") from None
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
