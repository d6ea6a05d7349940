"""The clip heads on real ESC-10 (400 clips, official 5 folds) with musicnn, under the project's
protocol and under the same protocol without the validation fold held back (issue 21, §2).

    python bench/esc10_heads.py --esc10 ../shared/data/esc10 --out /tmp/esc10-bench

`held-out val` is the project's protocol (docs/clip-classification.md): for each test fold the
next fold is validation (linear: chooses C, then the probe is refitted on training + validation;
mlp / temporal: early stopping on it, then a refit on training + validation for the best
epoch count). `all 4 folds` trains on every non-test fold with nothing
chosen on held-out data: linear with C = 1, mlp / temporal for a fixed number of epochs (the
median best epoch of the held-out-val runs, plus one) on all four folds. Accuracy: mean ± std
over folds x seeds; the extraction is the stage's own code with params.yaml's musicnn options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.classification.heads import HEADS, Fold, Transform, load_inputs, plan_folds  # noqa: E402
from avcache.contract import params as P  # noqa: E402
from avcache.contract.dataset import read_dataset, write_dataset  # noqa: E402
from avcache.datasets.stage import DatasetParams, load  # noqa: E402
from avcache.extraction import stage as run  # noqa: E402


def fit_predict(head, options, x, mask, y, fold: Fold, seed: int):
    t = Transform(x[fold.train], mask[fold.train], options.get("pca"))
    xs = t(x)
    kw = {k: v for k, v in options.items() if k not in ("inputs", "pca")}
    model = HEADS[head](**kw, inputs="audio", pca=options.get("pca"))
    model.fit(
        xs[fold.train],
        mask[fold.train],
        y[fold.train],
        (xs[fold.val], mask[fold.val], y[fold.val]),
        seed,
        False,
        lambda *_: None,
    )
    acc = float((model.predict(xs[fold.test], mask[fold.test]).argmax(1) == y[fold.test].argmax(1)).mean())
    return acc, model.best_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esc10", type=Path, default=Path("../shared/data/esc10"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/esc10-bench"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--heads", nargs="+", default=["linear", "mlp", "temporal"])
    ap.add_argument("--held-out-only", action="store_true", help="skip the all-4-folds protocol")
    a = ap.parse_args()
    cfg = P.load()
    a.out.mkdir(parents=True, exist_ok=True)
    ds = load(DatasetParams(format="esc10", root=str(a.esc10), videos=str(a.esc10), max_seconds=5))
    write_dataset(ds, a.out / "dataset.h5")
    ds = read_dataset(a.out / "dataset.h5")
    cache = a.out / "musicnn.h5"
    if not cache.exists():
        t0 = time.time()
        run.run("audio", "musicnn", cfg["extractors"]["musicnn"], ds, ds.videos, cache, progress=True)
        print(f"musicnn extraction: {time.time() - t0:.0f} s")
    x, mask, usable = load_inputs(ds, [cache])
    y = ds.labels
    plans = plan_folds(ds, usable)
    rows = []
    for head in a.heads:
        options = dict(cfg["models"][head])
        t0 = time.time()
        held = [fit_predict(head, options, x, mask, y, f, s) for s in a.seeds for f in plans]
        t_held = time.time() - t0
        accs = [acc for acc, _ in held]
        rows.append({"head": head, "protocol": "held-out val", "acc": accs, "seconds": t_held})
        if a.held_out_only:
            continue
        everything = [Fold(f.test_fold, np.concatenate([f.train, f.val]), f.train, f.test) for f in plans]
        if head == "linear":
            fixed = {**options, "c": 1.0}
        else:
            epochs = int(np.median([e for _, e in held])) + 1
            fixed = {**options, "max_epochs": epochs, "patience": epochs, "refit": False}
        t0 = time.time()
        # val = the training folds themselves: nothing is chosen on held-out data
        alls = [
            fit_predict(head, fixed, x, mask, y, Fold(f.test_fold, f.train, f.train, f.test), s)
            for s in a.seeds
            for f in everything
        ]
        rows.append(
            {
                "head": head,
                "protocol": "all 4 folds",
                "acc": [acc for acc, _ in alls],
                "seconds": time.time() - t0,
                "fixed": {k: fixed[k] for k in ("c", "max_epochs") if k in fixed},
            }
        )
    (a.out / f"esc10_heads-{'-'.join(a.heads)}.json").write_text(json.dumps(rows, indent=1))
    print("\n| head | protocol | test accuracy (folds x seeds) | fit time |\n|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['head']} | {r['protocol']} | {np.mean(r['acc']):.3f} ± {np.std(r['acc']):.3f} | "
            f"{r['seconds']:.0f} s |"
        )


if __name__ == "__main__":
    main()
