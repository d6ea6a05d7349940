"""Evaluate the trained checkpoints (one per seed) on val and test.

    python -m evaluate.evaluate     # the DVC stage

Writes ``results/metrics.json`` (mean and std over seeds; what `dvc metrics show/diff` read),
``results/per_class.json`` (precision / recall / F1 per class, as the thesis's tables),
``results/confusion.csv`` (test segments of the seed with the best val accuracy, for
`dvc plots show`), ``results/per_class.md`` (the same table for people) and PNG figures
``results/confusion.png`` and ``results/curves.png``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

from evaluate.plots import confusion_png, curves_png
from train.train import LIVE_DIR, MODELS_DIR, load_checkpoint, load_data, predict

RESULTS = Path("results")


def segment_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """The papers' segment accuracy (background included) plus F1 and one-vs-rest ROC AUC.

    probs, labels: [N, T, C]. AUC is averaged over the classes that have both positive and
    negative segments in this split (it is undefined for the others).
    """
    c = labels.shape[-1]
    y = labels.reshape(-1, c).argmax(-1)
    p = probs.reshape(-1, c)
    pred = p.argmax(-1)
    onehot = np.eye(c)[y]
    present = (onehot.sum(0) > 0) & (onehot.sum(0) < len(y))
    return {
        "acc": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.unique(y), zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, average="weighted", zero_division=0)),
        "auc_macro_ovr": float(roc_auc_score(onehot[:, present], p[:, present], average="macro")),
    }


def per_class(probs: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    c = len(names)
    y, pred = labels.reshape(-1, c).argmax(-1), probs.reshape(-1, c).argmax(-1)
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=np.arange(c), zero_division=0)
    return {n: {"precision": float(prec[k]), "recall": float(rec[k]), "f1": float(f1[k]),
                "support": int(support[k])} for k, n in enumerate(names)}


def mean_std(rows: list[dict]) -> dict:
    out = {}
    for k in rows[0]:
        vals = np.array([r[k] for r in rows])
        out[k] = round(float(vals.mean()), 4)
        out[f"{k}_std"] = round(float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, 4)
    return out


def main() -> None:
    training = json.loads((MODELS_DIR / "training.json").read_text())
    data = load_data(training["audio"], training["visual"])
    names = data.dataset.class_names + ["background"]
    per_seed, tables, best = {}, [], None
    for s in training["seeds"]:
        model = load_checkpoint(MODELS_DIR / f"seed{s['seed']}.pt", data)
        res = {}
        for split in ("val", "test"):
            idx = data.split(split)
            probs, labels = predict(model, data, idx).numpy(), data.labels[idx].numpy()
            res[split] = segment_metrics(probs, labels)
            if split == "test":
                valid = ~data.masked[idx.numpy()]
                if not valid.all():  # failed videos stayed in test
                    res[split]["acc_valid"] = segment_metrics(probs[valid], labels[valid])["acc"]
                tables.append(per_class(probs, labels, names))
                if best is None or s["val_acc"] > best[0]:
                    best = (s["val_acc"], s["seed"], probs, labels)
        per_seed[s["seed"]] = res
    test_idx = data.dataset.indices("test")
    metrics = {"model": training["model"], "audio": training["audio"], "visual": training["visual"],
               "seeds": len(per_seed),
               "test_videos": len(data.split("test")),
               "failed_test_videos": {"masked": int(data.masked[test_idx].sum()),
                                      "excluded": int(data.excluded[test_idx].sum())},
               **{split: mean_std([r[split] for r in per_seed.values()]) for split in ("test", "val")}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    classes = {n: {k: round(float(np.mean([t[n][k] for t in tables])), 4) for k in tables[0][n]}
               for n in names}
    (RESULTS / "per_class.json").write_text(json.dumps(
        {"per_seed": {str(k): v for k, v in per_seed.items()}, "per_class_test_mean_over_seeds": classes},
        indent=2) + "\n")
    with open(RESULTS / "per_class.md", "w") as f:
        f.write(f"# {training['model']} on {training['audio']} + {training['visual']}: test, "
                f"mean over {len(tables)} seed(s)\n\n| class | precision | recall | F1 | support |\n"
                "|---|---|---|---|---|\n")
        for n, m in classes.items():
            f.write(f"| {n} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |\n")
    _, seed, probs, labels = best
    c = len(names)
    actual, predicted = labels.reshape(-1, c).argmax(-1), probs.reshape(-1, c).argmax(-1)
    with open(RESULTS / "confusion.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["actual", "predicted"])
        w.writerows([names[a], names[p]] for a, p in zip(actual, predicted))
    what = f"{training['model']} on {training['audio']} + {training['visual']}"
    confusion_png(actual, predicted, names, RESULTS / "confusion.png", f"{what}: test, seed {seed}")
    if LIVE_DIR.is_dir():
        curves_png(LIVE_DIR, RESULTS / "curves.png", what)
    t = metrics["test"]
    print(f"{training['model']} on {training['audio']} + {training['visual']}: test acc "
          f"{t['acc']:.4f} ± {t['acc_std']:.4f} over {len(per_seed)} seeds "
          f"(confusion matrix: seed {seed}, best on val)")


if __name__ == "__main__":
    main()
