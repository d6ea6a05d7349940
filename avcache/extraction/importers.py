"""The AVE authors' released features as caches: ``vggish_release`` and ``vgg19_release``.

Registered like extractors, so a pair of them is selected the usual way; nothing is decoded:

    # params.yaml: dataset.root -> the AVE annotation folder, dataset.videos -> the release folder
    dvc exp run -S audio=vggish_release -S visual=vgg19_release

The release holds (all under dataset key ``avadataset``) ``audio_feature.h5`` [4143,10,128]
(VGGish), ``visual_feature.h5`` [4143,10,7,7,512] (VGG-19 pool5), ``labels.h5`` [4143,10,29],
and ``train_order.h5`` / ``val_order.h5`` / ``test_order.h5`` (key ``order``: row indices).
Rows follow Annotations.txt, like our dataset file; the import refuses to write anything unless
the release's labels and split indices agree with the dataset file row for row.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from avcache.contract.cache import CacheWriter
from avcache.contract.dataset import SEGMENTS, SPLITS, Dataset
from avcache.contract.io import counted, sha256_files
from avcache.extraction.extractors.base import Extractor

FILES = {
    "audio": ("audio_feature.h5", "vggish_release", "VGGish 128-d embedding per 0.96 s"),
    "visual": ("visual_feature.h5", "vgg19_release", "VGG-19 pool5 7x7x512, 16 frames/s averaged"),
}


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
        raise ReleaseError(
            f"{folder / 'labels.h5'}: shape {labels.shape}, but the dataset file has "
            f"{ds.labels.shape}; build features/dataset.h5 from the AVE annotations"
        )
    bad = np.flatnonzero((labels.argmax(-1) != ds.labels.argmax(-1)).any(-1))
    if len(bad):
        raise ReleaseError(
            f"{folder / 'labels.h5'}: {counted(len(bad), 'row')} {'disagrees' if len(bad) == 1 else 'disagree'} "
            "with the dataset file "
            f"(first: row {bad[0]}, video {ds.video_ids[bad[0]]}); the release's row "
            "order is not Annotations.txt's"
        )
    for s in SPLITS:
        order = np.sort(_read(folder / f"{s}_order.h5", "order").astype(int))
        if not np.array_equal(order, ds.indices(s)):
            raise ReleaseError(
                f"{folder / f'{s}_order.h5'}: its {counted(len(order), 'row')} are not the "
                f"{counted(len(ds.indices(s)), s + ' row')} of the dataset file's split"
            )


def import_release(folder: str | Path, ds: Dataset, modality: str, out: str | Path) -> Path:
    """Write the release's ``modality`` features as a cache at ``out``, after checking its rows."""
    folder, out = Path(folder), Path(out)
    check_release(folder, ds)
    fname, name, layer = FILES[modality]
    feats = _read(folder / fname, "avadataset").astype(np.float32)
    if len(feats) != len(ds.video_ids) or feats.shape[1] != SEGMENTS:
        raise ReleaseError(f"{folder / fname}: shape {feats.shape}, expected [{len(ds.video_ids)}, {SEGMENTS}, ...]")
    prov = {
        "extractor": name,
        "name": name,
        "modality": modality,
        "layer": layer,
        "weights": "AVE authors' released features (Tian et al., ECCV 2018)",
        "weights_sha256": sha256_files(folder / fname),
        "source": str(folder / fname),
        "reduction": {"method": "none", "dim": None},
        "dataset_order_sha256": ds.order_sha256,
    }
    with CacheWriter(out, ds.video_ids, feats.shape[1:], prov) as w:
        for i, row in enumerate(feats):
            w.write(i, row)
    return out


class Release(Extractor):
    """Not a model: imports a released cache instead of extracting (see ``avcache.extraction.stage.main``)."""

    @classmethod
    def import_cache(cls, dataset: Dataset, folder: str | Path, out: str | Path) -> Path:
        return import_release(folder, dataset, cls.modality, out)


class VGGishRelease(Release):
    name, modality = "vggish_release", "audio"


class VGG19Release(Release):
    name, modality = "vgg19_release", "visual"
