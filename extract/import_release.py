"""Import the AVE authors' released features into the cache format, so no extraction is needed.

    python -m extract.import_release /path/to/AVE/data     # after `dvc repro dataset` on AVE

The release holds (all under dataset key ``avadataset``) ``audio_feature.h5`` [4143,10,128]
(VGGish), ``visual_feature.h5`` [4143,10,7,7,512] (VGG-19 pool5), ``labels.h5`` [4143,10,29],
and ``train_order.h5`` / ``val_order.h5`` / ``test_order.h5`` (key ``order``: row indices).
Rows follow Annotations.txt, like our dataset file; the import refuses to write anything unless
the release's labels and split indices agree with ``features/dataset.h5`` row for row.
Writes ``features/audio/vggish_release.h5`` and ``features/visual/vgg19_release.h5``; then
``dvc exp run -S audio=vggish_release -S visual=vgg19_release`` trains on them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from extract import params as P
from extract.cache import CacheWriter
from extract.dataset import SPLITS, Dataset, read_dataset
from extract.extractors.base import sha256_files

FILES = {"audio": ("audio_feature.h5", "vggish_release", "VGGish 128-d embedding per 0.96 s"),
         "visual": ("visual_feature.h5", "vgg19_release", "VGG-19 pool5 7x7x512, 16 frames/s averaged")}


class ReleaseError(ValueError):
    """The release files are missing or disagree with the dataset file."""


def _read(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise ReleaseError(f"{path}: missing from the release folder")
    with h5py.File(path, "r") as f:
        if key not in f:
            raise ReleaseError(f"{path}: no dataset {key!r} (found {list(f)})")
        return f[key][()]


def check_release(folder: Path, ds: Dataset) -> None:
    labels = _read(folder / "labels.h5", "avadataset")
    if labels.shape != ds.labels.shape:
        raise ReleaseError(f"{folder / 'labels.h5'}: shape {labels.shape}, but the dataset file has "
                           f"{ds.labels.shape}; build features/dataset.h5 from the AVE annotations")
    bad = np.flatnonzero((labels.argmax(-1) != ds.labels.argmax(-1)).any(-1))
    if len(bad):
        raise ReleaseError(f"{folder / 'labels.h5'}: {len(bad)} rows disagree with the dataset file "
                           f"(first: row {bad[0]}, video {ds.video_ids[bad[0]]}); the release's row "
                           "order is not Annotations.txt's")
    for s in SPLITS:
        order = np.sort(_read(folder / f"{s}_order.h5", "order").astype(int))
        if not np.array_equal(order, ds.indices(s)):
            raise ReleaseError(f"{folder / f'{s}_order.h5'}: its {len(order)} rows are not the "
                               f"{len(ds.indices(s))} {s} rows of the dataset file's split")


def import_release(folder: str | Path, ds: Dataset, out_dir: str | Path = P.FEATURES) -> list[Path]:
    folder, out_dir = Path(folder), Path(out_dir)
    check_release(folder, ds)
    written = []
    for modality, (fname, name, layer) in FILES.items():
        feats = _read(folder / fname, "avadataset").astype(np.float32)
        if len(feats) != len(ds.video_ids) or feats.shape[1] != 10:
            raise ReleaseError(f"{folder / fname}: shape {feats.shape}, expected "
                               f"[{len(ds.video_ids)}, 10, ...]")
        prov = {"extractor": name, "modality": modality, "layer": layer,
                "weights": "AVE authors' released features (Tian et al., ECCV 2018)",
                "weights_sha256": sha256_files(folder / fname), "source": str(folder / fname),
                "reduction": {"method": "none", "dim": None}, "dataset_order_sha256": ds.order_sha256}
        out = out_dir / modality / f"{name}.h5"
        with CacheWriter(out, ds.video_ids, feats.shape[1:], prov) as w:
            for i, row in enumerate(feats):
                w.write(i, row)
        written.append(out)
    return written


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release", help="folder with audio_feature.h5, visual_feature.h5, labels.h5, *_order.h5")
    a = ap.parse_args(argv)
    try:
        for p in import_release(a.release, read_dataset(P.DATASET_FILE)):
            print(f"wrote {p}")
    except ReleaseError as e:
        raise SystemExit(f"import_release: {e}") from None


if __name__ == "__main__":
    main()
