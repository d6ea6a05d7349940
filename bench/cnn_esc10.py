"""A CNN on ESC-10's real clips under the clip protocol (official 5 folds, validation the next
fold, early stopping), with log-mels computed here by librosa until the project's ``logmel``
extractor is merged: 16 kHz, 40 mel bands, 40 frames/s, 5 s per clip (shorter ones zero-padded,
their valid frames recorded).

    .venv/bin/python bench/cnn_esc10.py --esc10 ../shared/data/esc10 --out /tmp/cnn_esc10 \
        --model lowcomplexity --seeds 0 --set max_epochs=40 patience=8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.kernels import pin  # noqa: E402

pin()

import numpy as np  # noqa: E402

from avcache.classification.evaluate import evaluate  # noqa: E402
from avcache.classification.heads import check_options  # noqa: E402
from avcache.classification.train import train  # noqa: E402
from avcache.contract import cache  # noqa: E402
from avcache.contract.cache import CacheWriter, read_features  # noqa: E402
from avcache.contract.dataset import ClipDataset, write_dataset  # noqa: E402

SR, MELS, FPS, SECONDS = 16000, 40, 40, 5


def logmels(root: Path):
    import librosa

    files = sorted(root.glob("* - */*.ogg"))
    classes = sorted({f.parent.name for f in files})
    x = np.zeros((len(files), SECONDS * FPS, MELS), np.float32)
    valid = np.zeros(len(files), int)
    for i, f in enumerate(files):
        y, _ = librosa.load(f, sr=SR)
        m = librosa.feature.melspectrogram(y=y[: SECONDS * SR], sr=SR, n_fft=800, hop_length=SR // FPS, n_mels=MELS)
        db = librosa.power_to_db(m, ref=1.0).T[: SECONDS * FPS]
        x[i, : len(db)], valid[i] = db, len(db)
    labels = np.eye(len(classes), dtype=np.uint8)[[classes.index(f.parent.name) for f in files]]
    folds = np.array([int(f.name.split("-")[0]) for f in files])
    groups = [f.name.split("-")[1] for f in files]  # the freesound source: one fold per source
    return files, classes, x, valid, labels, folds, groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc10", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="lowcomplexity")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", nargs="*", default=[], help="models.<model> options, key=value (YAML values)")
    a = ap.parse_args()
    import yaml

    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    files, classes, x, valid, labels, folds, groups = logmels(a.esc10)
    ids = [f"{f.parent.name}/{f.name}" for f in files]
    n = len(ids)
    ds = ClipDataset(
        ids,
        classes,
        labels,
        np.full(n, -1, np.int8),
        paths=ids,
        seconds=np.ceil(valid / FPS).astype(int),
        folds=folds,
        groups=groups,
    )
    write_dataset(ds, a.out / "dataset.h5")
    with CacheWriter(a.out / "logmel.h5", ids, x.shape[1:], {"name": "logmel-librosa"}) as w:
        for i, row in enumerate(x):
            w.write(i, row)
    cache.read_spectrograms = lambda p, d: (read_features(p, d), valid, FPS)
    print(f"log-mels of {n} clips: {time.time() - t0:.0f} s")
    options = check_options(a.model, {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)})
    t1 = time.time()
    spec = a.out / "logmel.h5"
    info = train(a.model, options, a.seeds, ds, spec, spec, a.out / "models", a.out / "live", True, "cpu")
    print(f"training ({len(a.seeds)} seed(s) x 5 folds): {time.time() - t1:.0f} s")
    metrics = evaluate(a.out / "dataset.h5", a.out / "models", a.out / "results", a.out / "live")
    epochs = [r["epochs"] for r in info["runs"]]
    print(json.dumps({"test": metrics["test"], "epochs": epochs}, indent=1))


if __name__ == "__main__":
    main()
