"""Train one model per seed on a pair of cached features; keep the checkpoint best on val.

    python -m avcache train --dataset features/dataset.h5 --audio features/audio/musicnn.h5 \
        --visual features/visual/efficientnet.h5 --models models --live dvclive
    # reads params.yaml `model`, `models.<model>` and `train`

The caches are loaded once and moved to the training device (``train.device``) once; batches
are row gathers there. The recipe defaults are the reference's: Adam(1e-3), StepLR stepped per
iteration (15000 iterations, x0.1), batch 64 with the last partial batch dropped, 300 epochs,
MultiLabelSoftMarginLoss on the softmax outputs, fp32. Unlike the reference (which "validated" on
the test split), checkpoints are selected on the validation split; test is never looked at here.
``train.patience`` stops a seed once val accuracy has not improved for that many epochs: the run
is then exactly the first epochs of the full run (nothing else depends on it), and the selected
checkpoint is the best on val among them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from avcache import runtime
from avcache.contract import params as P
from avcache.contract.cache import CacheError, read_provenance
from avcache.contract.dataset import DatasetError
from avcache.contract.io import atomic_write, atomic_write_text, hash_file
from avcache.contract.pair import load_pair
from avcache.contract.pair import shapes as pair_shapes
from avcache.contract.params import Recipe
from avcache.localization.models import (
    CheckpointError,
    build,
    check_inputs,
    check_options,
    load_tensors,
    predict,
    resolve_device,
    rows,
    save_checkpoint,
)
from avcache.workdir import WorkDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Patience:
    """The patience rule (``train.patience``; None: never stop): the selected epoch is the first
    with the best val accuracy so far (only a strict improvement moves it), and a seed stops after
    the epoch that is ``patience`` epochs past it. A run with patience is therefore exactly the
    first epochs of the full run, and ``replay`` tells its epochs from the full run's accuracies."""

    patience: int | None

    @staticmethod
    def improves(acc: float, best_acc: float) -> bool:
        return acc > best_acc

    def exhausted(self, best_epoch: int, epoch: int) -> bool:
        """After ``epoch``, has val accuracy gone ``patience`` epochs without improving?"""
        return self.patience is not None and epoch - best_epoch >= self.patience

    def replay(self, val: list[float]) -> tuple[int, int]:
        """(selected epoch, stopping epoch), 0-based, of the run with this patience whose full
        run had the val accuracies ``val`` (one per epoch)."""
        best = 0
        for epoch, acc in enumerate(val):
            if self.improves(acc, val[best]):
                best = epoch
            if self.exhausted(best, epoch):
                return best, epoch
        return best, len(val) - 1


def reference_loss(logits, labels):
    """The reference's: MultiLabelSoftMarginLoss on the softmax *probabilities* (weak gradients)."""
    return F.multilabel_soft_margin_loss(F.softmax(logits, dim=-1), labels)


def cross_entropy(logits, labels):
    """Cross-entropy on the logits against the (one-hot) label distribution of each segment."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(0, 1))


LOSSES = {"reference": reference_loss, "cross_entropy": cross_entropy}


@dataclass
class Data:
    """A pair of caches as tensors on one device: features [N, T, D] and [N, T, R, C], one-hot
    labels [N, T, C], and the row indices of each split."""

    audio: torch.Tensor
    visual: torch.Tensor
    labels: torch.Tensor
    splits: dict[str, torch.Tensor]

    def split(self, name: str) -> torch.Tensor:
        return self.splits[name]

    def to(self, device) -> Data:
        """Everything moved to ``device`` once; training then gathers its batches there."""
        return Data(
            self.audio.to(device),
            self.visual.to(device),
            self.labels.to(device),
            {k: v.to(device) for k, v in self.splits.items()},
        )

    @property
    def device(self) -> torch.device:
        return self.visual.device

    @property
    def shapes(self) -> dict:
        return pair_shapes(self.audio, self.visual, self.labels)


class Batches:
    """Training batches gathered on the data's device into buffers reused from batch to batch
    (on the CPU a fresh 64-MB visual batch per step costs page faults)."""

    def __init__(self, data: Data, size: int):
        self.data = data
        self.buffers = [
            torch.empty((size, *x.shape[1:]), dtype=x.dtype, device=x.device)
            for x in (data.audio, data.visual, data.labels)
        ]

    def __call__(self, idx: torch.Tensor):
        return [
            rows(x, idx, out) for x, out in zip((self.data.audio, self.data.visual, self.data.labels), self.buffers)
        ]


def load_data(dataset, audio, visual) -> Data:
    pair = load_pair(dataset, audio, visual)
    return Data(
        torch.from_numpy(pair.audio),
        torch.from_numpy(pair.visual),
        torch.from_numpy(pair.labels),
        {s: torch.from_numpy(pair.split(s)) for s in ("train", "val", "test")},
    )


def segment_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return (probs.argmax(-1) == labels.argmax(-1).to(probs.device)).float().mean().item()


def _load_resume(path: Path | None, device: torch.device):
    """The saved training state, or None to start fresh (also when the file is unreadable)."""
    if path is None or not path.exists():
        return None
    try:
        return load_tensors(path, map_location=device, advice="")
    except CheckpointError as e:  # never resume from a corrupt or refused file: start this seed over
        log.warning("cannot resume from %s: %s; restarting this seed", path, str(e).removeprefix(f"{path}: "))
        return None


def train_one(
    model_name: str,
    options: dict,
    data: Data,
    recipe: Recipe,
    seed: int,
    live=None,
    progress: bool = True,
    state_path: Path | None = None,
    on_epoch: Callable[[int, nn.Module, dict], None] | None = None,
) -> tuple[nn.Module, dict]:
    """Train with one seed on ``data``'s device; returns the model holding its best-on-val weights,
    and a summary (best and last epoch, 0-based).

    With ``state_path`` the full training state (weights, optimiser, scheduler, batch-order
    generator, best so far, history) is saved after every epoch, atomically, and a later call
    resumes from it; the result is identical to an uninterrupted run. The patience count is
    ``epoch - best epoch``, so it resumes with them. ``on_epoch(epoch, model, history row)`` is
    called after each validation (the benchmark's hook).
    """
    gen = runtime.deterministic(seed)  # the batch order comes from this CPU generator: the same on every device
    device = data.device
    model = build(model_name, **data.shapes, **options).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=recipe.lr_step, gamma=recipe.lr_gamma)
    loss_fn = LOSSES[recipe.loss]
    bf16 = recipe.precision == "bf16"
    patience = Patience(recipe.patience)
    train_idx, val_idx = data.split("train"), data.split("val")
    n_batches, bs = len(train_idx) // recipe.batch_size, recipe.batch_size
    if n_batches == 0:
        raise ValueError(f"{len(train_idx)} training videos: fewer than one batch of {bs}")
    batches = Batches(data, bs)
    best = {"val_acc": -1.0, "epoch": -1, "state": None}
    history, start = [], 0
    saved = _load_resume(state_path, device)
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        gen.set_state(saved["gen"].cpu())
        best, history, start = saved["best"], saved["history"], saved["epoch"] + 1
    bar = tqdm(
        range(recipe.epochs),
        desc=f"{model_name} seed {seed}",
        unit="epoch",
        initial=start,
        disable=not progress,
        dynamic_ncols=True,
    )
    for epoch in range(start, recipe.epochs):
        if history and patience.exhausted(best["epoch"], history[-1]["epoch"]):
            break  # also when resuming a seed that had already stopped
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen).to(device)]
        total = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no sync per step
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for b in range(n_batches):
            audio, visual, labels = batches(order[b * bs : (b + 1) * bs])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits, _ = model.logits(audio, visual)
            loss = loss_fn(logits.float(), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach()
            correct += (logits.argmax(-1) == labels.argmax(-1)).sum()
        val_acc = segment_accuracy(predict(model, data.audio, data.visual, val_idx), data.labels[val_idx])
        if patience.improves(val_acc, best["val_acc"]):
            best = {
                "val_acc": val_acc,
                "epoch": epoch,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
        history.append(
            {
                "epoch": epoch,
                "train/loss": total.item() / n_batches,
                "train/acc": correct.item() / (n_batches * bs * data.labels.shape[1]),
                "val/acc": val_acc,
            }
        )
        if state_path is not None:
            state = {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "gen": gen.get_state(),
                "best": best,
                "history": history,
                "epoch": epoch,
            }
            atomic_write(state_path, lambda f, state=state: torch.save(state, f))
        if on_epoch is not None:
            on_epoch(epoch, model, history[-1])
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['train/loss']:.4f}", val=f"{val_acc:.3f}", best=f"{best['val_acc']:.3f}")
    bar.close()
    if live is not None:  # after resuming too, the curves hold every epoch
        for row in history:
            live.step = row["epoch"]
            for k in ("train/loss", "train/acc", "val/acc"):
                live.log_metric(f"seed{seed}/{k}", row[k])
    model.load_state_dict(best["state"])
    if best["epoch"] == 0 and history[-1]["epoch"] < recipe.epochs - 1:
        log.warning(
            f"{model_name} seed {seed} stopped at epoch {history[-1]['epoch']} (patience "
            f"{recipe.patience}) without ever beating its first epoch's val accuracy ({best['val_acc']:.4f}): "
            "it may still be on a trivial prediction. The reference loss can sit on all-background for tens "
            "of epochs (docs/scale.md, docs/benchmarks.md); raise train.patience or use train.loss: cross_entropy"
        )
    return model, {
        "seed": seed,
        "best_epoch": best["epoch"],
        "val_acc": best["val_acc"],
        "stop_epoch": history[-1]["epoch"],
    }


def run_key(model_name: str, options: dict, recipe: Recipe, caches: list[Path]) -> str:
    """What a resumable run depends on: model, options, recipe and the exact cache contents."""
    h = hashlib.sha256(json.dumps([model_name, options, asdict(recipe)], sort_keys=True).encode())
    for path in caches:
        hash_file(h, path)
    return h.hexdigest()[:16]


def train(
    model_name: str,
    options: dict,
    recipe: Recipe,
    dataset: Path,
    audio: Path | None,
    visual: Path | None,
    models_dir: Path,
    live_dir: Path | None,
    progress: bool = True,
) -> list[dict]:
    """The stage: one checkpoint per seed in ``models_dir`` plus ``training.json``.

    Seeds train one after the other: stacking their parameters (torch.func) gave no gain beyond
    noise on the CPU, where a step is bound by the visual matrix products and the LSTMs have no
    vmap rule (torch loops over them); bench/train_speed.py --only seeds measures it.
    """
    device = resolve_device(recipe.device)
    if recipe.precision == "bf16":
        runtime.check_torch_bf16(device, "train.precision")
    data = load_data(dataset, audio, visual).to(device)
    log.info(
        "train: %s on %s, %s, loss %s, patience %s",
        model_name,
        device,
        recipe.precision,
        recipe.loss,
        recipe.patience or "off",
    )
    models_dir.mkdir(parents=True, exist_ok=True)
    for old in models_dir.glob("*.pt"):
        old.unlink()
    work = WorkDir(
        models_dir.parent / f".{models_dir.name}.work",
        "",
        run_key(model_name, options, recipe, [p for p in (audio, visual) if p]),
    )
    caches = {
        m: {"path": str(p), **{k: read_provenance(p).get(k) for k in ("name", "extractor", "code_sha256")}}
        for m, p in (("audio", audio), ("visual", visual))
        if p is not None
    }
    summaries = []
    from dvclive import Live

    live = Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None) if live_dir else None
    try:
        for seed in recipe.seeds:
            model, summary = train_one(
                model_name, options, data, recipe, seed, live, progress, state_path=work.dir / f"seed{seed}.state.pt"
            )
            save_checkpoint(
                models_dir / f"seed{seed}.pt",
                model,
                model_name,
                options,
                data.shapes,
                recipe=asdict(recipe),
                caches=caches,
                summary=summary,
            )
            summaries.append(summary)
    finally:
        if live is not None:
            live.end()
    atomic_write_text(
        models_dir / "training.json",
        json.dumps(
            {
                "model": model_name,
                "options": options,
                "caches": caches,
                "recipe": asdict(recipe),
                "device": str(device),
                "seeds": summaries,
            },
            indent=2,
        )
        + "\n",
    )
    work.remove()
    return summaries


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--audio", type=Path, help="the audio cache (read when params.yaml `inputs` lists audio)")
    ap.add_argument("--visual", type=Path, help="the visual cache (read when `inputs` lists visual)")
    ap.add_argument("--models", type=Path, required=True, help="folder for seed<k>.pt and training.json")
    ap.add_argument("--live", type=Path, help="dvclive folder for the training curves")
    a = ap.parse_args(argv)
    try:
        cfg = P.load()
        name = cfg.get("model")
        recipe = P.from_params(Recipe, cfg.get("train"), "train")
        options = check_options(name, P.section(cfg, f"models.{name}"))
        check_inputs(name, P.selected_inputs(cfg))
        audio, visual = P.selected_caches(cfg, a.audio, a.visual)
        summaries = train(name, options, recipe, a.dataset, audio, visual, a.models, a.live)
    except (P.ParamsError, CacheError, DatasetError, ValueError) as e:
        raise SystemExit(f"train: {e}") from None
    for s in summaries:
        print(
            f"seed {s['seed']}: best val acc {s['val_acc']:.4f} at epoch {s['best_epoch']} "
            f"(trained to epoch {s['stop_epoch']})"
        )


if __name__ == "__main__":
    from avcache.cli import configure_logging

    configure_logging()
    main()
