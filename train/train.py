"""Train one model per seed on the cached features; keep the checkpoint with the best val accuracy.

    python -m train.train          # the DVC stage: reads params.yaml `audio`, `visual`, `model`, `train`

The selected caches are loaded once and kept in memory as tensors; batches are index gathers.
The recipe defaults are the reference's: Adam(1e-3), StepLR stepped per iteration
(15000 iterations, x0.1), batch 64 with the last partial batch dropped, 300 epochs,
MultiLabelSoftMarginLoss on the softmax outputs. Unlike the reference (which "validated" on the
test split), checkpoints are selected on the validation split; test is never looked at here.
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from extract import params as P
from extract.cache import read_features, read_provenance, read_valid
from extract.dataset import Dataset, read_dataset
from extract.run import atomic_write
from train.models import build

MODELS_DIR = Path("models")
LIVE_DIR = Path("dvclive")
WORK_DIR = Path(".train_work")  # per-epoch resume state; outside `models/`, which DVC clears


@dataclass
class Recipe:
    epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    lr_step: int = 15000  # iterations
    lr_gamma: float = 0.1
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    hidden_dim: int = 128
    hidden_size: int = 512


@dataclass
class Data:
    """Everything a model needs, in memory: features as [N, T, D] and [N, T, R, C] tensors.

    ``excluded`` rows (a failed video under the ``exclude`` policy) are in no split; ``masked``
    rows (``mask`` policy) are left out of training and validation but stay in test, so the
    official test set is evaluated whole.
    """
    audio: torch.Tensor
    visual: torch.Tensor
    labels: torch.Tensor  # [N, T, classes] float one-hot
    dataset: Dataset
    audio_name: str = ""
    visual_name: str = ""
    excluded: np.ndarray | None = None
    masked: np.ndarray | None = None

    def split(self, name: str) -> torch.Tensor:
        idx = self.dataset.indices(name)
        drop = np.zeros(len(self.labels), bool)
        if self.excluded is not None:
            drop |= self.excluded
        if self.masked is not None and name != "test":
            drop |= self.masked
        return torch.from_numpy(idx[~drop[idx]])


def load_data(audio: str, visual: str, dataset: Dataset | None = None) -> Data:
    dataset = dataset or read_dataset(P.DATASET_FILE)
    a = read_features(P.cache_path("audio", audio), dataset)
    v = read_features(P.cache_path("visual", visual), dataset)
    v = v.reshape(v.shape[0], v.shape[1], -1, v.shape[-1]) if v.ndim == 5 else v[:, :, None, :]
    excluded = np.zeros(len(a), bool)
    masked = np.zeros(len(a), bool)
    for modality, name in (("audio", audio), ("visual", visual)):
        valid, policy = read_valid(P.cache_path(modality, name), dataset)
        (excluded if policy == "exclude" else masked)[~valid] = True
    return Data(torch.from_numpy(a), torch.from_numpy(v), torch.from_numpy(dataset.labels).float(),
                dataset, audio, visual, excluded, masked & ~excluded)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


def make_model(name: str, data: Data, recipe: Recipe) -> nn.Module:
    return build(name, audio_dim=data.audio.shape[-1], visual_dim=data.visual.shape[-1],
                 regions=data.visual.shape[2], n_classes=data.labels.shape[-1],
                 hidden_dim=recipe.hidden_dim, hidden_size=recipe.hidden_size)


def segment_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return (probs.argmax(-1) == labels.argmax(-1)).float().mean().item()


@torch.no_grad()
def predict(model: nn.Module, data: Data, idx: torch.Tensor, batch: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(data.audio[idx[i:i + batch]], data.visual[idx[i:i + batch]])
                      for i in range(0, len(idx), batch)])


def _save_atomic(obj, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def _load_resume(path: Path | None):
    """The saved training state, or None to start fresh (also when the file is unreadable)."""
    if path is None or not path.exists():
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception as e:  # never resume from a corrupt file: start this seed over
        print(f"warning: cannot resume from {path} ({type(e).__name__}: {e}); restarting this seed")
        return None


def train_one(model_name: str, data: Data, recipe: Recipe, seed: int, live=None,
              progress: bool = True, state_path: Path | None = None) -> tuple[nn.Module, dict]:
    """Train with one seed; returns the model holding its best-on-val weights, and a summary.

    With ``state_path`` the full training state (weights, optimiser, scheduler, batch-order
    generator, best so far, history) is saved after every epoch, atomically, and a later call
    resumes from it; the result is identical to an uninterrupted run.
    """
    gen = seed_everything(seed)
    model = make_model(model_name, data, recipe)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=recipe.lr_step, gamma=recipe.lr_gamma)
    loss_fn = nn.MultiLabelSoftMarginLoss()
    train_idx, val_idx = data.split("train"), data.split("val")
    n_batches = len(train_idx) // recipe.batch_size
    if n_batches == 0:
        raise ValueError(f"{len(train_idx)} training videos: fewer than one batch of {recipe.batch_size}")
    best = {"val_acc": -1.0, "epoch": -1, "state": None}
    history, start = [], 0
    saved = _load_resume(state_path)
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        gen.set_state(saved["gen"])
        best, history, start = saved["best"], saved["history"], saved["epoch"] + 1
    bar = tqdm(range(recipe.epochs), desc=f"{model_name} seed {seed}", unit="epoch", initial=start,
               disable=not progress, dynamic_ncols=True)
    for epoch in range(start, recipe.epochs):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        total, correct, seen = 0.0, 0, 0
        for b in range(n_batches):
            idx = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            probs = model(data.audio[idx], data.visual[idx])
            loss = loss_fn(probs, data.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            correct += (probs.argmax(-1) == data.labels[idx].argmax(-1)).sum().item()
            seen += idx.numel() * data.labels.shape[1]
        val_acc = segment_accuracy(predict(model, data, val_idx), data.labels[val_idx])
        if val_acc > best["val_acc"]:
            best = {"val_acc": val_acc, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        history.append({"epoch": epoch, "train/loss": total / n_batches, "train/acc": correct / seen,
                        "val/acc": val_acc})
        if state_path is not None:
            _save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                          "gen": gen.get_state(), "best": best, "history": history, "epoch": epoch}, state_path)
        bar.update(1)
        bar.set_postfix(loss=f"{total / n_batches:.4f}", val=f"{val_acc:.3f}", best=f"{best['val_acc']:.3f}")
    bar.close()
    if live is not None:  # after resuming too, the curves hold every epoch
        for row in history:
            live.step = row["epoch"]
            for k in ("train/loss", "train/acc", "val/acc"):
                live.log_metric(f"seed{seed}/{k}", row[k])
    model.load_state_dict(best["state"])
    return model, {"seed": seed, "best_epoch": best["epoch"], "val_acc": best["val_acc"]}


def save_checkpoint(path: Path, model: nn.Module, model_name: str, data: Data, recipe: Recipe,
                    summary: dict) -> None:
    """State dict plus everything needed to rebuild the model and to know what it was trained on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic({"model": model_name, "state_dict": model.state_dict(), "recipe": asdict(recipe),
                "audio": data.audio_name, "visual": data.visual_name,
                "shapes": {"audio": list(data.audio.shape[2:]), "visual": list(data.visual.shape[2:])},
                "caches": {m: read_provenance(P.cache_path(m, n)).get("code_sha256")
                           for m, n in (("audio", data.audio_name), ("visual", data.visual_name))},
                "summary": summary}, path)


def load_checkpoint(path: Path, data: Data) -> nn.Module:
    ck = torch.load(path, weights_only=False)
    recipe = Recipe(**ck["recipe"])
    model = make_model(ck["model"], data, recipe)
    model.load_state_dict(ck["state_dict"])
    return model.eval()


def run_key(model_name: str, data: Data, recipe: Recipe) -> str:
    """What a resumable run depends on: model, recipe and the exact cache contents."""
    h = hashlib.sha256(json.dumps([model_name, asdict(recipe)], sort_keys=True).encode())
    for modality, name in (("audio", data.audio_name), ("visual", data.visual_name)):
        with open(P.cache_path(modality, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def main() -> None:
    cfg = P.load()
    recipe = Recipe(**cfg.get("train", {}))
    data = load_data(cfg["audio"], cfg["visual"])
    from dvclive import Live
    MODELS_DIR.mkdir(exist_ok=True)
    for old in MODELS_DIR.glob("*.pt"):
        old.unlink()
    work = WORK_DIR / run_key(cfg["model"], data, recipe)
    work.mkdir(parents=True, exist_ok=True)
    summaries = []
    with Live(str(LIVE_DIR), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for seed in recipe.seeds:
            model, summary = train_one(cfg["model"], data, recipe, seed, live,
                                       state_path=work / f"seed{seed}.state.pt")
            save_checkpoint(MODELS_DIR / f"seed{seed}.pt", model, cfg["model"], data, recipe, summary)
            summaries.append(summary)
    (MODELS_DIR / "training.json").write_text(json.dumps(
        {"model": cfg["model"], "audio": cfg["audio"], "visual": cfg["visual"], "seeds": summaries},
        indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    for s in summaries:
        print(f"seed {s['seed']}: best val acc {s['val_acc']:.4f} at epoch {s['best_epoch']}")


if __name__ == "__main__":
    main()
