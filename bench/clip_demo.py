"""Every clip head on the embedded clip demo with both installable extractors (docs/clip-classification.md):
folds x seeds, mean ± std.

    python -m avcache demo clip_demo && python bench/clip_demo.py --out /tmp/clip-bench

The caches are built by the extraction stage's own code (musicnn as configured; EfficientNet-Lite0
as configured but with `mean` instead of `pca`, which a fold dataset cannot fit), then each head
of params.yaml `models` (linear, mlp, temporal) is trained per fold on audio, visual and both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.classification.evaluate import evaluate  # noqa: E402
from avcache.classification.train import train  # noqa: E402
from avcache.contract import params as P  # noqa: E402
from avcache.contract.dataset import read_dataset, write_dataset  # noqa: E402
from avcache.datasets.stage import DatasetParams, load  # noqa: E402
from avcache.extraction import stage as run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("data/clip_demo"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/clip-bench"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--heads", nargs="+", default=["linear", "mlp", "temporal"])
    a = ap.parse_args()
    cfg = P.load()
    a.out.mkdir(parents=True, exist_ok=True)
    ds = load(
        DatasetParams(format="csv", root=str(a.root), videos=str(a.root), max_seconds=cfg["dataset"]["max_seconds"])
    )
    write_dataset(ds, a.out / "dataset.h5")
    ds = read_dataset(a.out / "dataset.h5")
    visual_opts = {**cfg["extractors"]["efficientnet"], "reduction": {"method": "mean", "dim": 128}}
    caches = {}
    for modality, name, opts in (
        ("audio", "musicnn", cfg["extractors"]["musicnn"]),
        ("visual", "efficientnet", visual_opts),
    ):
        caches[modality] = a.out / f"{name}.h5"
        if not caches[modality].exists():
            run.run(modality, name, opts, ds, ds.videos, caches[modality], progress=False)
    rows = []
    for head in a.heads:
        for inputs in ("audio", "visual", "both"):
            folder = a.out / f"{head}-{inputs}"
            options = {**cfg["models"][head], "inputs": inputs}
            train(
                head, options, a.seeds, ds, caches["audio"], caches["visual"], folder / "models", None, progress=False
            )
            m = evaluate(a.out / "dataset.h5", folder / "models", folder / "results")
            rows.append(
                {
                    "head": head,
                    "inputs": inputs,
                    **{k: m["test"][k] for k in ("acc", "acc_std", "macro_f1", "macro_f1_std")},
                }
            )
    (a.out / "clip_demo.json").write_text(json.dumps(rows, indent=1))
    names = {"audio": "musicnn", "visual": "EfficientNet-Lite0", "both": "both"}
    print("\n| head | features | test accuracy | macro F1 |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['head']} | {names[r['inputs']]} | {r['acc']:.3f} ± {r['acc_std']:.3f} | "
            f"{r['macro_f1']:.3f} ± {r['macro_f1_std']:.3f} |"
        )


if __name__ == "__main__":
    main()
