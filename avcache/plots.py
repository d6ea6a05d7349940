"""Static PNG figures beside the Vega plots, for people reading results without a browser."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_png(actual: np.ndarray, predicted: np.ndarray, names: list[str], path: Path, title: str) -> None:
    c = len(names)
    m = np.zeros((c, c), int)
    np.add.at(m, (actual, predicted), 1)
    rows = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * c, 1.0 + 0.45 * c))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(c):
        for j in range(c):
            if m[i, j]:
                ax.text(
                    j, i, m[i, j], ha="center", va="center", fontsize=7, color="white" if rows[i, j] > 0.5 else "black"
                )
    ax.set_xticks(range(c), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(c), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual (row-normalised colour, counts)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _tsv(path: Path) -> tuple[list[int], list[float]]:
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    key = [k for k in rows[0] if k not in ("step", "timestamp")][0]
    return [int(r["step"]) for r in rows], [float(r[key]) for r in rows]


def curves_png(live_dir: Path, path: Path, title: str) -> None:
    """Every curve dvclive logged (per seed, and per fold for clip heads): losses on the left,
    accuracies on the right (dotted: training)."""
    metrics = live_dir / "plots" / "metrics"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for f in sorted(metrics.rglob("*.tsv")):
        name = f.relative_to(metrics).with_suffix("").as_posix()
        x, y = _tsv(f)
        ax = ax_loss if "loss" in f.stem else ax_acc
        ax.plot(x, y, ":" if "/train/" in f"/{name}" and ax is ax_acc else "-", label=name)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy (dotted: train)")
    _finish(fig, (ax_loss, ax_acc), title, path)


def _finish(fig, axes, title: str, path: Path) -> None:
    """Legends where something was drawn, a light grid, the title; saved and closed."""
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def c_curves_png(runs: list[dict], path: Path, title: str, score: str) -> int:
    """The linear probe's validation score per C (log axis), one line per fold and seed; the
    marker: the C chosen (refitted on training + validation clips). Returns the curves drawn."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    drawn = 0
    for r in runs:
        pts = [(float(c), v) for c, v in r.get("val_score_by_c", {}).items() if v is not None]
        if not pts:
            continue
        (line,) = ax.plot(*zip(*pts), "-o", ms=3, label=f"fold{r['test_fold']}/seed{r['seed']}")
        drawn += 1
        chosen = [v for c, v in pts if c == r["c"]]
        if chosen:
            ax.plot([r["c"]], chosen, "*", ms=10, color=line.get_color())
    ax.set(
        xscale="log",
        xlabel="C (inverse regularisation)",
        ylabel=f"validation {score}",
        title="linear probe: validation score per C (star: chosen)",
    )
    _finish(fig, (ax,), title, path)
    return drawn
