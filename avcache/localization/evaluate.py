"""Evaluate the trained checkpoints (one per seed) on val and test.

    python -m avcache evaluate --dataset features/dataset.h5 --audio features/audio/musicnn.h5 \
        --visual features/visual/efficientnet.h5 --models models --live dvclive --results results

Runs on params.yaml ``train.device``. Writes ``results/metrics.json`` (mean and std over seeds,
and each seed's best and last training epoch; what `dvc metrics show/diff` read),
``results/per_class.json`` (precision / recall / F1 per class, as the thesis's tables),
``results/confusion.csv`` (test segments of the seed with the best val accuracy, for
`dvc plots show`), ``results/per_class.md`` (the same table for people) and PNG figures
``results/confusion.png`` and ``results/curves.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from avcache.contract import params as P
from avcache.contract.cache import CacheError
from avcache.contract.dataset import DatasetError
from avcache.contract.io import atomic_write_text, counted
from avcache.contract.pair import load_pair
from avcache.localization.models import CheckpointError, load_checkpoint, predict, resolve_device
from avcache.metrics import mean_per_class, mean_std, per_class, segment_metrics, write_confusion, write_per_class_md
from avcache.plots import confusion_png, curves_png


def training_epochs(seeds: list[dict]) -> dict:
    """When each seed's selected checkpoint was reached (``best_epoch``) and when training stopped
    (``stop_epoch``; below the last epoch when ``train.patience`` stopped it), 0-based."""
    keys = ("best_epoch", "stop_epoch")
    return {
        **mean_std([{k: s[k] for k in keys} for s in seeds]),
        "per_seed": {str(s["seed"]): {k: s[k] for k in keys} for s in seeds},
    }


def evaluate(
    dataset: Path,
    audio: Path,
    visual: Path,
    models_dir: Path,
    results: Path,
    live_dir: Path | None = None,
    device: str = "cpu",
) -> dict:
    training = json.loads((models_dir / "training.json").read_text())
    pair = load_pair(dataset, audio, visual)
    device = resolve_device(device)
    tensors = torch.from_numpy(pair.audio).to(device), torch.from_numpy(pair.visual).to(device)
    names = pair.dataset.class_names + ["background"]
    audio_name, visual_name = (
        training["caches"][m]["name"] or Path(training["caches"][m]["path"]).stem for m in ("audio", "visual")
    )
    what = f"{training['model']} on {audio_name} + {visual_name}"
    per_seed, tables, best = {}, [], None
    for s in training["seeds"]:
        model, _ = load_checkpoint(models_dir / f"seed{s['seed']}.pt", device, pair.shapes, f"{audio} + {visual}")
        res = {}
        for split in ("val", "test"):
            idx = pair.split(split)
            probs = predict(model, *tensors, torch.from_numpy(idx)).numpy()
            labels = pair.labels[idx]
            res[split] = segment_metrics(probs, labels)
            if split == "test":
                valid = ~pair.masked[idx]
                if not valid.all():  # failed videos stayed in test
                    res[split]["acc_valid"] = segment_metrics(probs[valid], labels[valid])["acc"]
                tables.append(per_class(probs, labels, names))
                if best is None or s["val_acc"] > best[0]:
                    best = (s["val_acc"], s["seed"], probs, labels)
        per_seed[s["seed"]] = res
    test_idx = pair.dataset.indices("test")
    metrics = {
        "model": training["model"],
        "audio": audio_name,
        "visual": visual_name,
        "seeds": len(per_seed),
        "test_videos": len(pair.split("test")),
        "failed_test_videos": {
            "masked": int(pair.masked[test_idx].sum()),
            "excluded": int(pair.excluded[test_idx].sum()),
        },
        "train": training_epochs(training["seeds"]),
        **{split: mean_std([r[split] for r in per_seed.values()]) for split in ("test", "val")},
    }
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    classes = mean_per_class(tables, names)
    atomic_write_text(
        results / "per_class.json",
        json.dumps(
            {"per_seed": {str(k): v for k, v in per_seed.items()}, "per_class_test_mean_over_seeds": classes}, indent=2
        )
        + "\n",
    )
    write_per_class_md(results / "per_class.md", f"{what}: test, mean over {counted(len(tables), 'seed')}", classes)
    _, seed, probs, labels = best
    c = len(names)
    actual, predicted = labels.reshape(-1, c).argmax(-1), probs.reshape(-1, c).argmax(-1)
    write_confusion(results / "confusion.csv", actual, predicted, names)
    confusion_png(actual, predicted, names, results / "confusion.png", f"{what}: test, seed {seed}")
    if live_dir is not None and live_dir.is_dir():
        curves_png(live_dir, results / "curves.png", what)
    t = metrics["test"]
    print(
        f"{what}: test acc {t['acc']:.4f} ± {t['acc_std']:.4f} over {counted(len(per_seed), 'seed')} "
        f"(confusion matrix: seed {seed}, best on val)"
    )
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--audio", type=Path, required=True)
    ap.add_argument("--visual", type=Path, required=True)
    ap.add_argument("--models", type=Path, required=True, help="the train stage's output folder")
    ap.add_argument("--live", type=Path, help="dvclive folder (for curves.png)")
    ap.add_argument("--results", type=Path, required=True, help="folder for metrics, tables and figures")
    a = ap.parse_args(argv)
    try:
        device = P.section(P.load(), "train").get("device", "auto")
        evaluate(a.dataset, a.audio, a.visual, a.models, a.results, a.live, device)
    except (P.ParamsError, CacheError, DatasetError, CheckpointError, FileNotFoundError) as e:
        raise SystemExit(f"evaluate: {e}") from None


if __name__ == "__main__":
    main()
