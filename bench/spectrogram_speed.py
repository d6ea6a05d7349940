"""What the ``logmel`` / ``mfcc`` stage costs on FSDD's 300 official test clips (takes 0-4).

    python bench/spectrogram_speed.py                      # ../shared/data/fsdd
    python bench/spectrogram_speed.py --fsdd /data/fsdd --out /tmp/spectro

The takes are copied to a folder of their own (``--out``), read with ``dataset.format: fsdd``,
and extracted by the stage itself (serial engine, CPU) with params.yaml's options: ``logmel``,
``mfcc`` with deltas [1, 2], and ``logmel`` stored float16 + gzip 4. Prints wall seconds, clips
per second, CPU seconds of this process and the cache's bytes (docs/extractors.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.kernels import pin  # noqa: E402

pin()

from avcache.contract import params as P  # noqa: E402
from avcache.contract.cache import read_spectrograms  # noqa: E402
from avcache.datasets.clips import FSDD_TEST_TAKES, load_clips  # noqa: E402
from avcache.extraction import stage  # noqa: E402

RUNS = [
    ("logmel", {}),
    ("mfcc", {"deltas": [1, 2]}),
    ("logmel", {"storage": {"dtype": "float16", "compression": "gzip", "level": 4}}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fsdd", default=str(Path(__file__).resolve().parent.parent.parent / "shared/data/fsdd"))
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one, removed)")
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="spectro-"))
    (out / "fsdd" / "recordings").mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(a.fsdd, "recordings").glob("*.wav")):
        if int(f.stem.split("_")[2]) < FSDD_TEST_TAKES:
            shutil.copy(f, out / "fsdd" / "recordings" / f.name)
    ds = load_clips(out / "fsdd", "fsdd")
    print(f"{len(ds.video_ids)} clips, {ds.max_seconds} s per row; load average {os.getloadavg()[0]:.1f}")
    for k, (name, extra) in enumerate(RUNS):
        options = {**P.section(P.load(), f"extractors.{name}"), **extra}
        cache = out / f"{k}-{name}.h5"
        wall, cpu = time.perf_counter(), time.process_time()
        stage.run("audio", name, options, ds, ds.videos, cache, progress=False, device="cpu", decode_workers=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        x, valid, fps = read_spectrograms(cache, ds)
        print(
            f"| {name} {extra or ''} | {wall:.1f} s | {len(ds.video_ids) / wall:.1f} clips/s | {cpu:.1f} s CPU | "
            f"{cache.stat().st_size / 1e6:.1f} MB | {'x'.join(map(str, x.shape))}, {fps} frames/s, "
            f"valid frames {valid.min()}-{valid.max()} |"
        )
    if a.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
