"""What cache storage (``extractors.<name>.storage``) costs and saves, on built caches.

    python bench/storage.py                 # the current pair (features/), params.yaml's train recipe
    python bench/storage.py --seeds 0 1 2 --out /tmp/storage

Each cache is rewritten with every storage (dtype x compression) by the stage's own writer:
bytes on disk, seconds to read the whole cache (best of 3, page cache warm) and the largest
rounding error; then the params.yaml model is trained and evaluated on float32 and on float16
(gzip) caches with the same seeds, so the accuracy cost of halving the bytes is measured, not
assumed. Prints a Markdown table (docs/cache-format.md, docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.contract import params as P  # noqa: E402
from avcache.contract.cache import CacheWriter, Storage, read_features, read_provenance  # noqa: E402
from avcache.contract.dataset import read_dataset  # noqa: E402

STORAGES = [
    Storage("float32", "none"),
    Storage("float32", "gzip"),
    Storage("float16", "none"),
    Storage("float16", "lzf"),
    Storage("float16", "gzip"),
]


def restore(src: Path, dst: Path, storage: Storage, dataset) -> None:
    """``src`` rewritten with ``storage`` (rows, validity, provenance and reduction state kept)."""
    x = read_features(src, dataset)
    with h5py.File(src) as f:
        valid, policy = f["valid"][()], str(f.attrs["failure_policy"])
        state = {k: v[()] for k, v in f["reduction"].items()} if "reduction" in f else {}
    provenance = {k: v for k, v in read_provenance(src).items() if k != "storage"}
    with CacheWriter(dst, dataset.video_ids, x.shape[1:], provenance, storage) as w:
        for i, row in enumerate(x):
            w.write(i, row)
        w.set_valid(valid, policy)
        w.save_state("reduction", state)


def read_seconds(path: Path, dataset, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        read_features(path, dataset)
        times.append(time.perf_counter() - t)
    return min(times)


def accuracy(dataset_path: Path, audio: Path, visual: Path, out: Path, seeds: list[int]) -> dict:
    from avcache.localization.evaluate import evaluate
    from avcache.localization.train import Recipe, train

    cfg = P.load()
    recipe = P.from_params(Recipe, {**cfg["train"], "seeds": seeds}, "train")
    name = cfg["model"]
    train(name, dict(cfg["models"][name]), recipe, dataset_path, audio, visual, out / "models", None, progress=False)
    m = evaluate(dataset_path, audio, visual, out / "models", out / "results")
    return {"acc": m["test"]["acc"], "acc_std": m["test"]["acc_std"], "seeds": seeds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, default=Path("features/dataset.h5"))
    ap.add_argument("--caches", type=Path, nargs="+", help="default: the params.yaml pair under features/")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("/tmp/avcache-storage"))
    a = ap.parse_args()
    cfg = P.load()
    caches = a.caches or [Path(f"features/audio/{cfg['audio']}.h5"), Path(f"features/visual/{cfg['visual']}.h5")]
    ds = read_dataset(a.dataset)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for src in caches:
        ref = read_features(src, ds)
        for s in STORAGES:
            dst = a.out / f"{src.stem}-{s.dtype}-{s.compression}.h5"
            restore(src, dst, s, ds)
            err = np.abs(read_features(dst, ds) - ref)
            rel = float((err / np.maximum(np.abs(ref), 1e-30))[np.abs(ref) > 1e-3].max()) if err.any() else 0.0
            rows.append(
                {
                    "cache": src.stem,
                    "shape": list(ref.shape),
                    "dtype": s.dtype,
                    "compression": s.compression,
                    "mib": dst.stat().st_size / 2**20,
                    "read_s": read_seconds(dst, ds),
                    "max_abs_err": float(err.max()),
                    "max_rel_err": rel,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    results = {}
    for dtype in ("float32", "float16"):
        pair = [a.out / f"{c.stem}-{dtype}-gzip.h5" for c in caches]
        results[dtype] = accuracy(a.dataset, *pair, a.out / f"train-{dtype}", a.seeds)
        print(dtype, results[dtype], flush=True)
    (a.out / "storage.json").write_text(json.dumps({"rows": rows, "accuracy": results}, indent=1))
    print(
        "\n| cache | dtype | compression | MiB | read (s) | max abs error | max rel error |\n"
        "|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['cache']} {tuple(r['shape'][1:])} | {r['dtype']} | {r['compression']} | {r['mib']:.2f} | "
            f"{r['read_s']:.3f} | {r['max_abs_err']:.2g} | {r['max_rel_err']:.2g} |"
        )
    print(f"\n| caches | test acc ({cfg['model']}, seeds {a.seeds}) |\n|---|---|")
    for dtype, r in results.items():
        print(f"| {dtype} (gzip) | {r['acc']:.4f} ± {r['acc_std']:.4f} |")


if __name__ == "__main__":
    main()
