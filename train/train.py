"""Train one model per seed on the cached features; keep the checkpoint with the best val accuracy.

    python -m train.train          # the DVC stage: reads params.yaml `audio`, `visual`, `model`, `train`

The selected caches are loaded once and kept in memory as tensors; batches are index gathers.
The recipe defaults are the reference's: Adam(1e-3), StepLR stepped per iteration
(15000 iterations, x0.1), batch 64 with the last partial batch dropped, 300 epochs,
MultiLabelSoftMarginLoss on the softmax outputs. Unlike the reference (which "validated" on the
test split), checkpoints are selected on the validation split; test is never looked at here.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from extract import params as P
from extract.cache import read_features, read_provenance
from extract.dataset import Dataset, read_dataset
from train.models import build

MODELS_DIR = Path("models")
LIVE_DIR = Path("dvclive")


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
    """Everything a model needs, in memory: features as [N, T, D] and [N, T, R, C] tensors."""
    audio: torch.Tensor
    visual: torch.Tensor
    labels: torch.Tensor  # [N, T, classes] float one-hot
    dataset: Dataset
    audio_name: str = ""
    visual_name: str = ""

    def split(self, name: str) -> torch.Tensor:
        return torch.from_numpy(self.dataset.indices(name))


def load_data(audio: str, visual: str, dataset: Dataset | None = None) -> Data:
    dataset = dataset or read_dataset(P.DATASET_FILE)
    a = read_features(P.cache_path("audio", audio), dataset)
    v = read_features(P.cache_path("visual", visual), dataset)
    v = v.reshape(v.shape[0], v.shape[1], -1, v.shape[-1]) if v.ndim == 5 else v[:, :, None, :]
    return Data(torch.from_numpy(a), torch.from_numpy(v), torch.from_numpy(dataset.labels).float(),
                dataset, audio, visual)


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


def train_one(model_name: str, data: Data, recipe: Recipe, seed: int, live=None,
              progress: bool = True) -> tuple[nn.Module, dict]:
    """Train with one seed; returns the model holding its best-on-val weights, and a summary."""
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
    bar = tqdm(range(recipe.epochs), desc=f"{model_name} seed {seed}", unit="epoch",
               disable=not progress, dynamic_ncols=True)
    for epoch in bar:
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
        bar.set_postfix(loss=f"{total / n_batches:.4f}", val=f"{val_acc:.3f}", best=f"{best['val_acc']:.3f}")
        if live is not None:
            live.step = epoch
            live.log_metric(f"seed{seed}/train/loss", total / n_batches)
            live.log_metric(f"seed{seed}/train/acc", correct / seen)
            live.log_metric(f"seed{seed}/val/acc", val_acc)
    model.load_state_dict(best["state"])
    return model, {"seed": seed, "best_epoch": best["epoch"], "val_acc": best["val_acc"]}


def save_checkpoint(path: Path, model: nn.Module, model_name: str, data: Data, recipe: Recipe,
                    summary: dict) -> None:
    """State dict plus everything needed to rebuild the model and to know what it was trained on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model_name, "state_dict": model.state_dict(), "recipe": asdict(recipe),
                "audio": data.audio_name, "visual": data.visual_name,
                "shapes": {"audio": list(data.audio.shape[2:]), "visual": list(data.visual.shape[2:])},
                "caches": {m: read_provenance(P.cache_path(m, n)).get("code_sha256")
                           for m, n in (("audio", data.audio_name), ("visual", data.visual_name))},
                "summary": summary}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, data: Data) -> nn.Module:
    ck = torch.load(path, weights_only=False)
    recipe = Recipe(**ck["recipe"])
    model = make_model(ck["model"], data, recipe)
    model.load_state_dict(ck["state_dict"])
    return model.eval()


def main() -> None:
    cfg = P.load()
    recipe = Recipe(**cfg.get("train", {}))
    data = load_data(cfg["audio"], cfg["visual"])
    from dvclive import Live
    MODELS_DIR.mkdir(exist_ok=True)
    for old in MODELS_DIR.glob("*.pt"):
        old.unlink()
    summaries = []
    with Live(str(LIVE_DIR), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for seed in recipe.seeds:
            model, summary = train_one(cfg["model"], data, recipe, seed, live)
            save_checkpoint(MODELS_DIR / f"seed{seed}.pt", model, cfg["model"], data, recipe, summary)
            summaries.append(summary)
    (MODELS_DIR / "training.json").write_text(json.dumps(
        {"model": cfg["model"], "audio": cfg["audio"], "visual": cfg["visual"], "seeds": summaries},
        indent=2) + "\n")
    for s in summaries:
        print(f"seed {s['seed']}: best val acc {s['val_acc']:.4f} at epoch {s['best_epoch']}")


if __name__ == "__main__":
    main()
