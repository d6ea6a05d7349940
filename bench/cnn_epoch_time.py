"""Seconds per training epoch of a spectrogram CNN two ways (issue 19): from the `logmel` cache
with the augmentation on the training device, against what scripts without a cache do, decoding
each clip and computing its log-mel with librosa in every epoch (same model, same augmentation).

    python bench/cnn_epoch_time.py --esc10 ../shared/data/esc10 --out /tmp/cnn-epoch

The cache is built by the extraction stage with params.yaml's `logmel` options on real ESC-10;
the librosa path computes the same spectrogram (the extractor's own `spectrogram` call, which the
tests check against librosa) from `librosa.load(path, sr=sample_rate)`. Training rows: fold 1's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.kernels import pin  # noqa: E402

pin()

import torch  # noqa: E402

from avcache.classification import cnns  # noqa: E402
from avcache.classification.augment import Augment, options  # noqa: E402
from avcache.classification.heads import plan_folds  # noqa: E402
from avcache.contract import params as P  # noqa: E402
from avcache.contract.cache import read_spectrograms  # noqa: E402
from avcache.contract.dataset import read_dataset, write_dataset  # noqa: E402
from avcache.datasets.stage import DatasetParams, load  # noqa: E402
from avcache.extraction import extractors  # noqa: E402
from avcache.extraction import stage as run  # noqa: E402

AUGMENT = {"freq_masks": 2, "freq_width": 8, "time_masks": 2, "time_width": 20, "mixup_alpha": 0.2}


def epoch(net, opt, batches, aug) -> float:
    """One pass over ``batches`` (a generator of (x [B, T, M], y, valid)); its wall seconds."""
    t0 = time.perf_counter()
    net.train()
    for x, y, valid in batches:
        xa, ya, _ = aug(x, y, valid)
        loss = torch.nn.functional.cross_entropy(net(xa.transpose(1, 2).unsqueeze(1)), ya)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc10", type=Path, default=Path("../shared/data/esc10"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/cnn-epoch"))
    ap.add_argument("--model", default="lowcomplexity")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    cfg = P.load()
    a.out.mkdir(parents=True, exist_ok=True)
    ds = load(DatasetParams(format="esc10", root=str(a.esc10), videos=str(a.esc10), max_seconds=5))
    write_dataset(ds, a.out / "dataset.h5")
    ds = read_dataset(a.out / "dataset.h5")
    spec_options = P.section(cfg, "extractors.logmel")
    cache = a.out / "logmel.h5"
    if not cache.exists():
        t0 = time.time()
        run.run("audio", "logmel", spec_options, ds, ds.videos, cache, progress=True, device="cpu")
        print(f"logmel cache of {len(ds.video_ids)} clips: {time.time() - t0:.0f} s")
    x, valid, fps = read_spectrograms(cache, ds)
    rows = plan_folds(ds)[0].train
    y = torch.from_numpy(ds.labels.astype(np.float32))
    ex = extractors.create("logmel", {k: v for k, v in spec_options.items() if k not in ("reduction", "storage")})
    frames = x.shape[1]

    def from_cache(order):
        for b in range(0, len(order), a.batch):
            i = order[b : b + a.batch]
            yield torch.from_numpy(x[i]), y[i], torch.from_numpy(valid[i])

    def from_librosa(order):
        import librosa

        for b in range(0, len(order), a.batch):
            i = order[b : b + a.batch]
            xs, vs = [], []
            for k in i:
                wav, _ = librosa.load(Path(ds.videos) / ds.paths[k], sr=ex.sample_rate)
                wav = np.pad(wav, (0, max(0, ds.max_seconds * ex.sample_rate - len(wav))))
                s = ex.spectrogram(wav[: ds.max_seconds * ex.sample_rate])[:, :frames].T
                xs.append(s)
                vs.append(min(frames, int(np.ceil(len(wav) / ex.sample_rate * fps))))
            yield torch.from_numpy(np.stack(xs).astype(np.float32)), y[i], torch.tensor(vs)

    result = {}
    for way, batches in (("cache", from_cache), ("librosa", from_librosa)):
        torch.manual_seed(0)
        net = cnns.build_cnn(a.model, {}).build(x.shape[2], y.shape[1])
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        aug = Augment(options(AUGMENT, "bench"), seed=0)
        gen = np.random.default_rng(0)
        times = [epoch(net, opt, batches(gen.permutation(rows)), aug) for _ in range(a.epochs)]
        result[way] = float(np.median(times))
        print(f"{way}: {result[way]:.1f} s per epoch ({len(rows)} clips; epochs: {[round(t, 1) for t in times]})")
    print(
        f"\n| {a.model}, {len(rows)} ESC-10 training clips | s / epoch |\n|---|---|\n"
        f"| from the logmel cache, augmentation on the device | {result['cache']:.1f} |\n"
        f"| decoding + librosa log-mel every epoch | {result['librosa']:.1f} |\n"
        f"| ratio | {result['librosa'] / result['cache']:.1f}x |"
    )


if __name__ == "__main__":
    main()
