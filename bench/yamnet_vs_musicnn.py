"""YAMNet (from the TFLite file in ../shared/weights) against musicnn on ESC-10, with the `linear`
head on the official 5 folds (docs/extractors.md):

    python bench/yamnet_vs_musicnn.py --out /tmp/esc10-bench

Both caches are built by the extraction stage's own code from the real ESC-10 clips
(../shared/data/esc10, read as a `csv` clip dataset: label = the class folder, fold = the
official fold, group = the freesound id, so one recording never spans folds): YAMNet's 1024-d
embeddings, musicnn as params.yaml configures it (cnn1-3, 192-d), both without reduction. Then the
`linear` head of params.yaml `models` is trained and evaluated per fold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.classification.evaluate import evaluate  # noqa: E402
from avcache.classification.train import train  # noqa: E402
from avcache.contract import params as P  # noqa: E402
from avcache.contract.dataset import read_dataset, write_dataset  # noqa: E402
from avcache.datasets.stage import DatasetParams, load  # noqa: E402
from avcache.extraction import stage as run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def esc10_csv(esc10: Path, out: Path, per_class: int | None) -> Path:
    """A `csv` clip dataset over ESC-10's own files (a link to the folder, no copies)."""
    out.mkdir(parents=True, exist_ok=True)
    link = out / "esc10"
    if not link.exists():
        link.symlink_to(esc10.resolve(), target_is_directory=True)
    lines = ["path,label,fold,group"]
    for folder in sorted(p for p in esc10.iterdir() if p.is_dir() and " - " in p.name):
        label = folder.name.split(" - ", 1)[1]
        files = sorted(folder.glob("*.ogg"))
        for f in files[:: max(1, len(files) // per_class)][:per_class] if per_class else files:
            fold, source, _take = f.stem.split("-")
            lines.append(f'"esc10/{folder.name}/{f.name}",{label},{fold},{source}')
    (out / "clips.csv").write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc10", type=Path, default=SHARED / "data" / "esc10")
    ap.add_argument("--tflite", type=Path, default=SHARED / "weights" / "yamnet-int8.tflite")
    ap.add_argument("--out", type=Path, default=Path("/tmp/esc10-bench"))
    ap.add_argument("--per-class", type=int, default=None, help="N clips per class, spread over the folds")
    a = ap.parse_args()
    cfg = P.load()
    root = esc10_csv(a.esc10, a.out / "data", a.per_class)
    ds = load(DatasetParams(format="csv", root=str(root), videos=str(root), max_seconds=cfg["dataset"]["max_seconds"]))
    write_dataset(ds, a.out / "dataset.h5")
    ds = read_dataset(a.out / "dataset.h5")
    none = {"method": "none"}
    extractors = {
        "yamnet": {"handle": str(a.tflite), "layer": "embeddings", "reduction": none},
        "musicnn": {**cfg["extractors"]["musicnn"], "reduction": none},
    }
    rows = []
    for name, opts in extractors.items():
        cache = a.out / f"{name}.h5"
        t0 = time.perf_counter()
        if not cache.exists():
            run.run("audio", name, opts, ds, ds.videos, cache, progress=False, decode_workers=0)
        seconds = time.perf_counter() - t0
        folder = a.out / f"linear-{name}"
        options = {**cfg["models"]["linear"], "inputs": "audio"}
        train("linear", options, [0], ds, cache, None, folder / "models", None, progress=False)
        m = evaluate(a.out / "dataset.h5", folder / "models", folder / "results")
        rows.append({"extractor": name, "clips": len(ds.video_ids), "extract_s": round(seconds, 1), **m["test"]})
    (a.out / "yamnet_vs_musicnn.json").write_text(json.dumps(rows, indent=1))
    print(f"\nESC-10, {rows[0]['clips']} clips, official folds, linear head (params.yaml models.linear)")
    print("| features | test accuracy (mean ± std over folds) | macro F1 | extraction s |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['extractor']} | {r['acc']:.3f} ± {r['acc_std']:.3f} | {r['macro_f1']:.3f} ± "
            f"{r['macro_f1_std']:.3f} | {r['extract_s']} |"
        )


if __name__ == "__main__":
    main()
