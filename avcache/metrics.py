"""Metrics and result tables shared by both tasks' evaluation (AVE localization, clip classification).

Inputs are class probabilities and one-hot labels of any leading shape ([N, T, C] segments or
[N, C] clips): the class is the argmax of the last axis.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, roc_auc_score

from avcache.contract.io import atomic_write_text


def segment_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """The papers' segment accuracy (background included) plus F1 and one-vs-rest ROC AUC.

    probs, labels: [N, T, C] (or [N, C]). AUC is averaged over the classes that have both positive
    and negative items in this split (it is undefined for the others, and None when no class has
    both: a tiny validation fold of one class).
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
        "auc_macro_ovr": float(roc_auc_score(onehot[:, present], p[:, present], average="macro"))
        if present.any()
        else None,
    }


def per_class(probs: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Precision, recall, F1 and support of every class (the thesis's tables)."""
    c = len(names)
    y, pred = labels.reshape(-1, c).argmax(-1), probs.reshape(-1, c).argmax(-1)
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=np.arange(c), zero_division=0)
    return {
        n: {"precision": float(prec[k]), "recall": float(rec[k]), "f1": float(f1[k]), "support": int(support[k])}
        for k, n in enumerate(names)
    }


def mean_per_class(tables: list[dict], names: list[str]) -> dict:
    """The ``per_class`` tables of several seeds averaged, each value rounded to 4 decimals."""
    return {n: {k: round(float(np.mean([t[n][k] for t in tables])), 4) for k in tables[0][n]} for n in names}


def write_per_class_md(path: Path, title: str, classes: dict) -> None:
    """``classes`` (``mean_per_class``) as a markdown table for people, under ``# title``."""
    rows = [f"# {title}\n\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n"]
    rows += [
        f"| {n} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |\n"
        for n, m in classes.items()
    ]
    atomic_write_text(path, "".join(rows))


def write_confusion(path: Path, actual: np.ndarray, predicted: np.ndarray, names: list[str]) -> None:
    """One row per item (actual, predicted class names): what `dvc plots` draws as a confusion matrix."""
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["actual", "predicted"])
    w.writerows([names[a], names[p]] for a, p in zip(actual, predicted))
    atomic_write_text(path, table.getvalue())


def mean_std(rows: list[dict]) -> dict:
    """Mean and sample std (``<key>_std``) of every key over runs, rounded to 4 decimals; a key
    that is None in a run (undefined there) is averaged over the other runs."""
    out = {}
    for k in rows[0]:
        vals = np.array([r[k] for r in rows if r[k] is not None])  # None: undefined in that run
        if not len(vals):
            continue
        out[k] = round(float(vals.mean()), 4)
        out[f"{k}_std"] = round(float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, 4)
    return out
