"""Metrics of the clip heads from their saved test predictions: per fold, and mean ± std over
folds and seeds (accuracy, macro F1, macro one-vs-rest ROC AUC; mAP for multi-label tasks).

    python -m avcache evaluate --dataset features/dataset.h5 --audio features/audio/musicnn.h5 \
        --visual features/visual/efficientnet.h5 --models models --live dvclive --results results
    # on a clip dataset (the dataset file's kind picks this task)

Writes ``results/metrics.json``, ``results/per_class.json`` and ``.md``, ``results/confusion.csv``
and ``.png`` (every clip in its own test fold, the seed best on validation) and ``results/curves.png``:
with ``--live``, the validation loss per epoch of the neural heads; for ``linear``, its validation
score per C of the grid (from ``training.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from avcache.classification.cnns import describe_size
from avcache.contract.dataset import DatasetError, read_dataset
from avcache.contract.io import atomic_write_text, counted
from avcache.metrics import mean_per_class, mean_std, per_class, segment_metrics, write_confusion, write_per_class_md
from avcache.plots import c_curves_png, confusion_png, curves_png


def multilabel_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """mAP (the multi-label papers' metric), macro F1 at 0.5 and macro ROC AUC, over the classes
    with both positive and negative clips here."""
    present = (labels.sum(0) > 0) & (labels.sum(0) < len(labels))
    if not present.any():  # a tiny fold: no class both present and absent
        return {
            "map": None,
            "macro_f1": float(f1_score(labels, probs >= 0.5, average="macro", zero_division=0)),
            "auc_macro_ovr": None,
        }
    return {
        "map": float(average_precision_score(labels[:, present], probs[:, present], average="macro")),
        "macro_f1": float(f1_score(labels, probs >= 0.5, average="macro", zero_division=0)),
        "auc_macro_ovr": float(roc_auc_score(labels[:, present], probs[:, present], average="macro")),
    }


def metrics_of(probs, labels, multi_label) -> dict:
    return multilabel_metrics(probs, labels) if multi_label else segment_metrics(probs, labels)


def evaluate(dataset: Path, models_dir: Path, results: Path, live_dir: Path | None = None) -> dict:
    ds = read_dataset(dataset)
    training = json.loads((models_dir / "training.json").read_text())
    z = np.load(models_dir / "clips.npz")
    test_probs, val_probs, seeds, test_folds = z["test_probs"], z["val_probs"], z["seeds"], z["test_folds"]
    labels = ds.labels.astype(np.float32)
    runs = {"test": [], "val": []}
    per_fold = {}
    for si in range(len(seeds)):
        for fi, fold in enumerate(test_folds):
            test = np.flatnonzero((ds.folds == fold) & z["usable"])
            val = np.flatnonzero(~np.isnan(val_probs[si, fi, :, 0]))
            m = metrics_of(test_probs[si, test], labels[test], ds.multi_label)
            runs["test"].append(m)
            runs["val"].append(metrics_of(val_probs[si, fi, val], labels[val], ds.multi_label))
            per_fold.setdefault(str(int(fold)), []).append(m)
    tested = ~np.isnan(test_probs[0, :, 0])
    names = ds.class_names
    inputs = training["inputs"]
    what = f"{training['model']} on {inputs} ({', '.join(c['name'] for c in training['caches'].values())})"
    metrics = {
        "task": "clips",
        "model": training["model"],
        "inputs": inputs,
        **{m: c["name"] for m, c in training["caches"].items()},
        "folds": len(test_folds),
        "seeds": len(seeds),
        "test_clips": int(tested.sum()),
        "test": mean_std(runs["test"]),
        "val": mean_std(runs["val"]),
        "per_fold": {k: mean_std(v) for k, v in per_fold.items()},
        **({"model_size": training["model_size"]} if training.get("model_size") else {}),
    }
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    tables = [per_class(test_probs[si, tested], labels[tested], names) for si in range(len(seeds))]
    classes = mean_per_class(tables, names)
    atomic_write_text(
        results / "per_class.json",
        json.dumps({"per_class_test_mean_over_seeds": classes, "per_fold": metrics["per_fold"]}, indent=2) + "\n",
    )
    write_per_class_md(
        results / "per_class.md",
        f"{what}: every clip tested once (its own fold), mean over {counted(len(seeds), 'seed')}",
        classes,
    )
    key = "map" if ds.multi_label else "acc"

    def val_score(si: int) -> float:
        scores = [r[key] for r in runs["val"][si * len(test_folds) : (si + 1) * len(test_folds)] if r[key] is not None]
        return float(np.mean(scores)) if scores else -1.0

    best = int(np.argmax([val_score(si) for si in range(len(seeds))]))
    actual, predicted = labels[tested].argmax(1), test_probs[best, tested].argmax(1)
    write_confusion(results / "confusion.csv", actual, predicted, names)
    confusion_png(
        actual, predicted, names, results / "confusion.png", f"{what}: all folds, seed {int(seeds[best])} (best on val)"
    )
    if any("val_score_by_c" in r for r in training["runs"]):  # linear: no epochs; the C search
        c_curves_png(training["runs"], results / "curves.png", what, key)
    elif live_dir is not None and live_dir.is_dir():
        curves_png(live_dir, results / "curves.png", what)
    t = metrics["test"]
    runs = f"{counted(len(test_folds), 'fold')} x {counted(len(seeds), 'seed')}"
    print(f"{what}: test {key} {t[key]:.4f} ± {t[key + '_std']:.4f} over {runs}")
    if training.get("model_size"):
        print(describe_size(training["model"], training["model_size"]))
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--audio", type=Path, required=True, help="(the caches the heads were trained on)")
    ap.add_argument("--visual", type=Path, required=True)
    ap.add_argument("--models", type=Path, required=True, help="the train stage's output folder")
    ap.add_argument("--live", type=Path, help="dvclive folder (for curves.png)")
    ap.add_argument("--results", type=Path, required=True, help="folder for metrics, tables and figures")
    a = ap.parse_args(argv)
    try:
        evaluate(a.dataset, a.models, a.results, a.live)
    except (DatasetError, FileNotFoundError) as e:
        raise SystemExit(f"evaluate: {e}") from None


if __name__ == "__main__":
    main()
