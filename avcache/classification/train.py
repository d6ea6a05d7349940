"""Train a clip head on a clip dataset: every official test fold with every seed; the test and
validation predictions are saved for ``avcache.classification.evaluate``, which computes the metrics.

    python -m avcache train --dataset features/dataset.h5 --audio features/audio/musicnn.h5 \
        --visual features/visual/efficientnet.h5 --models models --live dvclive
    # on a clip dataset (the dataset file's kind picks this task); reads params.yaml `model`,
    # `models.<model>` (a head: linear, mlp, temporal; or a CNN on a spectrogram audio cache:
    # cnn, resnet18, resnet50, lowcomplexity, efficientnet_transfer), `train` (seeds; the CNNs
    # also train.device and train.precision) and `inputs` (the caches it reads: --audio, --visual or both)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avcache.classification.cnns import CNNS, build_cnn, describe_size, size_of
from avcache.classification.heads import HEADS, Transform, check_options, load_inputs, plan_folds
from avcache.contract import params as P
from avcache.contract.cache import CacheError, read_provenance
from avcache.contract.dataset import ClipDataset, DatasetError, read_dataset
from avcache.contract.io import atomic_write, atomic_write_text
from avcache.contract.params import Recipe


def train(
    name: str,
    options: dict,
    seeds: list[int],
    ds: ClipDataset,
    audio: Path | None,
    visual: Path | None,
    models_dir: Path,
    live_dir: Path | None = None,
    progress: bool = True,
    device: str = "auto",
    precision: str = "fp32",
) -> dict:
    """Every (test fold, seed): fit on the fold's training clips, stop on its validation clips
    (linear: choose C on them, then refit on training + validation clips), predict its test clips.
    Writes ``models/clips.npz`` (the predictions) and ``training.json``. A CNN reads the audio
    cache's spectrograms (its per-bin standardisation fitted per fold like the heads'), trains on
    ``device`` in ``precision`` and prints its size once."""
    cnn = name in CNNS
    options = dict(options)
    inputs, pca = options.pop("inputs", "audio"), options.get("pca")
    if cnn and inputs != "audio":
        raise P.ParamsError(
            f"params.yaml: model {name} trains on the audio spectrogram cache only, but inputs reads "
            f"{inputs}: set inputs: [audio] (and audio: logmel or mfcc)"
        )
    caches = {"audio": [audio], "visual": [visual], "both": [audio, visual]}[inputs]
    fps = None
    if cnn:
        x, mask, usable, fps = load_spectrograms(ds, audio)
    else:
        x, mask, usable = load_inputs(ds, caches)
    plans = plan_folds(ds, usable)
    model_size = None
    if cnn:  # the size before hours of training, where the student sees it
        model_size = size_of(name, options, x.shape[2], ds.labels.shape[1], fps)
        print(describe_size(name, model_size), flush=True)
    head_options = {k: v for k, v in options.items() if k not in ("inputs", "pca")}
    n, c = len(ds.video_ids), ds.labels.shape[1]
    test_probs = np.full((len(seeds), n, c), np.nan, np.float32)
    val_probs = np.full((len(seeds), len(plans), n, c), np.nan, np.float32)
    summary = []
    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    bar = tqdm(total=len(seeds) * len(plans), desc=f"{name} folds", disable=not progress)
    for si, seed in enumerate(seeds):
        for fi, fold in enumerate(plans):
            t = Transform(x[fold.train], mask[fold.train], pca)
            xs = t(x)
            curve = []
            if cnn:
                head, extra = build_cnn(name, options), {"frames_per_second": fps, "device": device}
                extra["precision"] = precision
            else:
                head, extra = HEADS[name](**head_options, inputs=inputs, pca=pca), {}
            head.fit(
                xs[fold.train],
                mask[fold.train],
                ds.labels[fold.train],
                (xs[fold.val], mask[fold.val], ds.labels[fold.val]),
                seed,
                ds.multi_label,
                lambda e, v, curve=curve, **more: curve.append((e, v, more)),
                **extra,
            )
            test_probs[si, fold.test] = head.predict(xs[fold.test], mask[fold.test])
            val_probs[si, fi, fold.val] = head.predict(xs[fold.val], mask[fold.val])
            if live is not None and name != "linear":  # linear: val score per C, in training.json
                run = f"fold{fold.test_fold}/seed{seed}"
                score = "map" if ds.multi_label else "acc"
                for e, v, more in curve:
                    live.step = e
                    live.log_metric(f"{run}/val/loss", v)
                    if "train_loss" in more:
                        live.log_metric(f"{run}/train/loss", more["train_loss"])
                    if np.isfinite(more.get("val_score", np.nan)):
                        live.log_metric(f"{run}/val/{score}", more["val_score"])
            summary.append(
                {
                    "seed": seed,
                    "test_fold": fold.test_fold,
                    "best_epoch": head.best_epoch,
                    "train": len(fold.train),
                    "val": len(fold.val),
                    "test": len(fold.test),
                    **(
                        {
                            "c": head.chosen_c,
                            "val_score_by_c": {str(c): v if np.isfinite(v) else None for c, v in head.c_scores.items()},
                            "refit_on": head.n_fit,
                        }
                        if name == "linear"
                        else {
                            "batch_size": head.batch,
                            "epochs": head.epochs,
                            "steps": head.steps,
                            **(
                                {"refit_on": head.n_fit, "refit_epochs": head.refit_epochs}
                                if hasattr(head, "n_fit")
                                else {}
                            ),
                        }
                    ),
                }
            )
            bar.update(1)
    bar.close()
    if live is not None:
        live.end()
    models_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(
        models_dir / "clips.npz",
        lambda f: np.savez(
            f,
            test_probs=test_probs,
            val_probs=val_probs,
            seeds=np.array(seeds),
            test_folds=np.array([p.test_fold for p in plans]),
            usable=usable,
        ),
    )
    info = {
        "task": "clips",
        "model": name,
        "options": options,
        "inputs": inputs,
        **(
            {"model_size": model_size, "frames_per_second": fps, "device": device, "precision": precision}
            if cnn
            else {}
        ),
        "caches": {
            m: {"path": str(p), "name": read_provenance(p).get("name")}
            for m, p in (("audio", audio), ("visual", visual))
            if p in caches
        },
        "runs": summary,
    }
    atomic_write_text(models_dir / "training.json", json.dumps(info, indent=2) + "\n")
    return info


def load_spectrograms(ds: ClipDataset, audio: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(frames [N, T, mels], valid-frames mask [N, T], usable rows [N], frames per second) of a
    spectrogram audio cache (``logmel`` / ``mfcc``)."""
    from avcache.contract import cache

    x, valid_frames, fps = cache.read_spectrograms(audio, ds)  # a CacheError names a cache of another layout
    usable = cache.read_valid(audio, ds)[0]
    mask = np.arange(x.shape[1])[None, :] < np.asarray(valid_frames)[:, None]
    return x.astype(np.float32, copy=False), mask, usable, int(fps)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--audio", type=Path, help="the audio cache (read when params.yaml `inputs` lists audio)")
    ap.add_argument("--visual", type=Path, help="the visual cache (read when `inputs` lists visual)")
    ap.add_argument("--models", type=Path, required=True, help="folder for clips.npz and training.json")
    ap.add_argument("--live", type=Path, help="dvclive folder for the validation curves")
    a = ap.parse_args(argv)
    try:
        cfg = P.load()
        name = cfg.get("model")
        recipe = P.from_params(Recipe, cfg.get("train"), "train")  # the seeds
        dataset = read_dataset(a.dataset)
        options = check_options(name, P.section(cfg, f"models.{name}"))
        audio, visual = P.selected_caches(cfg, a.audio, a.visual)
        options["inputs"] = "both" if audio and visual else "audio" if audio else "visual"
        train(
            name,
            options,
            recipe.seeds,
            dataset,
            audio,
            visual,
            a.models,
            a.live,
            device=recipe.device,
            precision=recipe.precision,
        )
    except (P.ParamsError, CacheError, DatasetError, ValueError) as e:
        raise SystemExit(f"train: {e}") from None


if __name__ == "__main__":
    main()
