"""Clip classification on cached per-second features: heads, and the official-fold protocol.

Heads (``model``, options under ``models.<name>``):

- ``linear``: a linear probe, logistic regression (scikit-learn, lbfgs) on the clip embedding;
  C is chosen on the validation fold from ``c_grid`` (accuracy; mAP when multi-label), then the
  probe is refitted with that C on training + validation clips;
- ``mlp``: HEAR's downstream model: one hidden layer, dropout, Adam, early stopping on the
  validation fold (``patience`` in epochs);
- ``temporal``: a bidirectional GRU over the clip's valid seconds, mean-pooled.

The neural heads train on the training folds only (validation decides when to stop); their batch
is capped so that a small training set still gets several optimiser steps per epoch.

The clip embedding is the mean of the clip's valid seconds (visual caches: also over regions;
spectrogram caches, ``logmel`` / ``mfcc``: also over each second's frames).
Protocol: each official test fold is tested once; validation is the next fold (or, where the
dataset has one test fold, a tenth of the training sources), never the test fold; training uses
the other folds. Standardisation and the optional PCA are fitted per fold on that fold's
training clips only. ``avcache.classification.train`` trains every fold with every seed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from avcache import runtime
from avcache.contract.cache import read_per_second, read_valid
from avcache.contract.dataset import ClipDataset
from avcache.contract.io import counted
from avcache.contract.params import ParamsError, check_call

log = logging.getLogger(__name__)


@dataclass
class Fold:
    test_fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def plan_folds(ds: ClipDataset, usable: np.ndarray | None = None) -> list[Fold]:
    """The train / val / test rows of every official test fold; no source in two of them."""
    usable = np.ones(len(ds.video_ids), bool) if usable is None else usable
    folds, groups = ds.folds, np.array(ds.groups)
    tests = ds.test_folds
    if not tests:
        raise ParamsError("the dataset has no test fold: clip heads need a dataset with folds")
    train_only = int(((folds == 0) & usable).sum())
    if train_only and len(tests) > 1:  # one test fold (DCASE's train / evaluate): fold 0 is its training set
        log.warning(
            "%s in fold 0, which is train-only: %s never tested "
            "(folds are numbered from 1; a 0-based numbering loses its first fold)",
            f"{counted(train_only, 'clip')} {'is' if train_only == 1 else 'are'}",
            "it is" if train_only == 1 else "they are",
        )
    if all(g == p for g, p in zip(ds.groups, ds.paths)):
        log.warning(
            "no source/group column (each clip is its own group): leakage between clips of one "
            "source recording across train, val and test cannot be checked"
        )
    plans = []
    for k, fold in enumerate(tests):
        test = np.flatnonzero((folds == fold) & usable)
        rest = (folds >= 0) & (folds != fold) & usable
        if len(tests) >= 3:
            val_fold = tests[(k + 1) % len(tests)]
            val, train = np.flatnonzero(rest & (folds == val_fold)), np.flatnonzero(rest & (folds != val_fold))
        else:  # one test fold (DCASE): a tenth of the training sources, chosen by their names
            held = np.array([int(hashlib.sha256(g.encode()).hexdigest()[:8], 16) % 10 == 0 for g in groups])
            val, train = np.flatnonzero(rest & held), np.flatnonzero(rest & ~held)
        plans.append(Fold(fold, train, val, test))
    return plans


def _regions_mean(x: np.ndarray) -> np.ndarray:
    """[N, T, d] or [N, T, h, w, c] -> [N, T, d]."""
    return x.reshape(x.shape[0], x.shape[1], -1, x.shape[-1]).mean(2) if x.ndim == 5 else x


def load_inputs(ds: ClipDataset, caches: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(per-second features [N, T, D], valid-seconds mask [N, T], usable rows [N]) of the caches,
    concatenated along D; a clip that failed in any cache is not usable."""
    feats, usable = [], np.ones(len(ds.video_ids), bool)
    for path in caches:
        feats.append(_regions_mean(read_per_second(path, ds)).astype(np.float32))
        usable &= read_valid(path, ds)[0]
    mask = np.arange(feats[0].shape[1])[None, :] < ds.seconds[:, None]
    return np.concatenate(feats, -1), mask, usable


class Transform:
    """Standardisation and an optional PCA, fitted on one fold's training clips."""

    def __init__(self, x: np.ndarray, mask: np.ndarray, pca: int | None):
        v = x[mask].astype(np.float64)
        self.mean, self.std = v.mean(0), v.std(0) + 1e-6
        self.components = None
        if pca:
            z = (v - self.mean) / self.std
            if pca > z.shape[1]:
                raise ParamsError(f"params.yaml: pca: {counted(pca, 'component')}, but the features have {z.shape[1]}")
            evals, evecs = np.linalg.eigh(z.T @ z / len(z))
            comps = evecs[:, np.argsort(evals)[::-1][:pca]].T
            self.components = comps * np.sign(comps[np.arange(pca), np.abs(comps).argmax(1)])[:, None]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.std
        return (z @ self.components.T if self.components is not None else z).astype(np.float32)


def clip_embedding(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)


C_GRID = (0.01, 0.1, 1.0, 10.0)


def val_score(probs: np.ndarray, y: np.ndarray, multi_label: bool) -> float:
    """Accuracy, or mAP over the classes both present and absent (multi-label)."""
    if not multi_label:
        return float((probs.argmax(1) == y.argmax(1)).mean())
    from sklearn.metrics import average_precision_score

    present = (y.sum(0) > 0) & (y.sum(0) < len(y))
    if not present.any():
        return float("nan")
    return float(average_precision_score(y[:, present], probs[:, present], average="macro"))


class Linear:
    """Logistic regression on the clip embedding (one-vs-rest when the task is multi-label).

    C: ``c`` when given, else the best of ``c_grid`` on the validation clips (ties: the smaller
    C); the final probe is refitted with it on training + validation clips."""

    def __init__(
        self,
        c: float | None = None,
        c_grid: list[float] | None = None,
        max_iter: int = 2000,
        inputs: Literal["audio", "visual", "both"] = "audio",
        pca: int | None = None,
    ):
        self.c, self.max_iter = c, max_iter
        self.c_grid = [float(v) for v in (c_grid or C_GRID)]
        if any(v <= 0 for v in self.c_grid) or (c is not None and c <= 0):
            raise ParamsError("models.linear: C must be > 0")

    def _fit(self, c, e, y, seed):
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        model = LogisticRegression(C=c, max_iter=self.max_iter, random_state=seed)
        model = OneVsRestClassifier(model) if self.multi_label else model
        return model.fit(e, y if self.multi_label else y.argmax(1))

    def _proba(self, model, e) -> np.ndarray:
        proba = model.predict_proba(e)
        if self.multi_label:
            return proba.astype(np.float32)
        out = np.zeros((len(e), self.n_classes), np.float32)  # a class absent from training: 0
        out[:, model.classes_] = proba
        return out

    def fit(self, x, mask, y, val, seed, multi_label, log):
        import warnings

        self.n_classes, self.multi_label, self.best_epoch = y.shape[1], multi_label, 0
        e, (vx, vm, vy) = clip_embedding(x, mask), val
        ve = clip_embedding(vx, vm)
        self.c_scores = {}
        if self.c is not None or not len(ve):
            self.chosen_c = self.c if self.c is not None else 1.0
        else:
            for c in self.c_grid:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a label column constant in training (one-vs-rest)
                    score = val_score(self._proba(self._fit(c, e, y, seed), ve), vy, multi_label)
                self.c_scores[c] = score
                log(c, score)
            finite = {c: v for c, v in self.c_scores.items() if np.isfinite(v)}
            self.chosen_c = max(finite, key=lambda c: (finite[c], -c)) if finite else 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = self._fit(self.chosen_c, np.concatenate([e, ve]), np.concatenate([y, vy]), seed)
        self.n_fit = len(e) + len(ve)
        return self

    def predict(self, x, mask) -> np.ndarray:
        return self._proba(self.model, clip_embedding(x, mask))


class LowestValLoss:
    """Early stopping of every clip model trained in epochs (the MLP and temporal heads, the
    CNNs): the epoch with the lowest validation loss so far is kept, with its weights, and
    training stops ``patience`` epochs after it."""

    def __init__(self, patience: int):
        self.patience, self.best, self.epoch, self.waited, self.weights = patience, float("inf"), -1, 0, None

    def stop_after(self, epoch: int, val_loss: float, net: nn.Module) -> bool:
        if val_loss < self.best:
            self.best, self.epoch, self.waited = val_loss, epoch, 0
            self.weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return False
        self.waited += 1
        return self.waited >= self.patience


class _Torch:
    """Shared by the neural heads: Adam, minibatches, early stopping on validation loss.

    ``patience`` counts epochs without a better validation loss. The batch is ``batch_size``
    capped at the training set; unset, min(default, max(16, n / 8)), so a small training set
    gets about 8 optimiser steps per epoch rather than one. ``refit`` (default): once the best
    epoch is known, a fresh network (same seed) trains on training + validation clips for that
    many epochs, so the validation fold is used for training too, as the linear probe's refit."""

    default_batch = 64

    def __init__(
        self,
        lr: float = 1e-3,
        batch_size: int | None = None,
        max_epochs: int = 500,
        patience: int = 20,
        dropout: float = 0.1,
        refit: bool = True,
    ):
        self.lr, self.batch_size, self.max_epochs, self.patience, self.dropout = (
            lr,
            batch_size,
            max_epochs,
            patience,
            dropout,
        )
        self.refit = refit
        if batch_size is not None and batch_size < 1 or patience < 1 or max_epochs < 1:
            raise ParamsError("clip head: batch_size, patience and max_epochs must be >= 1")

    def _train(self, x, mask, y, seed, epochs, after_epoch=None):
        """A fresh network trained for at most ``epochs``; ``after_epoch(epoch)`` returning True stops."""
        gen = runtime.deterministic(seed)
        self.net = self.build(x.shape[-1], y.shape[1])
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        target = torch.from_numpy(y.astype(np.float32)) if self.multi_label else torch.from_numpy(y.argmax(1))
        xt, mt = torch.from_numpy(x), torch.from_numpy(mask)
        n = len(xt)
        for epoch in range(epochs):
            self.net.train()
            self.epochs = epoch + 1
            order = torch.randperm(n, generator=gen)
            for b in range(0, n, self.batch):
                i = order[b : b + self.batch]
                self.steps += 1
                loss = self.loss_fn(self.net(xt[i], mt[i]), target[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if after_epoch is not None and after_epoch(epoch):
                break

    def fit(self, x, mask, y, val, seed, multi_label, log):
        self.multi_label = multi_label
        self.loss_fn = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
        vx, vm, vy = (torch.from_numpy(a) for a in val)
        vtarget = vy.float() if multi_label else vy.argmax(1)
        batch = self.batch_size or min(self.default_batch, max(16, len(x) // 8))
        self.batch = max(1, min(batch, len(x)))
        self.steps, self.epochs = 0, 0
        stopper = LowestValLoss(self.patience)

        def after_epoch(epoch: int) -> bool:
            self.net.eval()
            with torch.no_grad():
                val_loss = self.loss_fn(self.net(vx, vm), vtarget).item()
            log(epoch, val_loss)
            stop = stopper.stop_after(epoch, val_loss, self.net)
            self.best_epoch = stopper.epoch
            return stop

        self._train(x, mask, y, seed, self.max_epochs, after_epoch)
        self.n_fit, self.refit_epochs = len(x), 0
        if self.refit and len(val[0]):
            epochs, steps = self.epochs, self.steps
            self._train(
                np.concatenate([x, val[0]]),
                np.concatenate([mask, val[1]]),
                np.concatenate([y, val[2]]),
                seed,
                max(self.best_epoch + 1, 1),
            )
            self.n_fit += len(val[0])
            self.refit_epochs, self.epochs, self.steps = self.epochs, epochs, steps
        else:
            self.net.load_state_dict(stopper.weights)
        return self

    def predict(self, x, mask) -> np.ndarray:
        self.net.eval()
        with torch.no_grad():
            logits = self.net(torch.from_numpy(x), torch.from_numpy(mask))
        return (torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)).numpy()


class MLP(_Torch):
    """HEAR's downstream MLP on the clip embedding: Linear-ReLU-Dropout, then the class layer."""

    def __init__(
        self,
        hidden: int = 1024,
        dropout: float = 0.1,
        lr: float = 1e-3,
        batch_size: int | None = None,
        max_epochs: int = 500,
        patience: int = 20,
        refit: bool = True,
        inputs: Literal["audio", "visual", "both"] = "audio",
        pca: int | None = None,
    ):
        super().__init__(lr, batch_size, max_epochs, patience, dropout, refit)
        self.hidden = hidden

    default_batch = 256

    def build(self, d, c):
        mlp = nn.Sequential(nn.Linear(d, self.hidden), nn.ReLU(), nn.Dropout(self.dropout), nn.Linear(self.hidden, c))

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.mlp = mlp

            def forward(self, x, mask):
                m = mask.unsqueeze(-1).float()
                return self.mlp((x * m).sum(1) / m.sum(1).clamp(min=1))

        return Net()


class Temporal(_Torch):
    """A bidirectional GRU over the valid seconds, outputs mean-pooled over them, a class layer."""

    def __init__(
        self,
        hidden: int = 128,
        dropout: float = 0.1,
        lr: float = 1e-3,
        batch_size: int | None = None,
        max_epochs: int = 200,
        patience: int = 20,
        refit: bool = True,
        inputs: Literal["audio", "visual", "both"] = "audio",
        pca: int | None = None,
    ):
        super().__init__(lr, batch_size, max_epochs, patience, dropout, refit)
        self.hidden = hidden

    def build(self, d, c):
        hidden, dropout = self.hidden, self.dropout

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.gru = nn.GRU(d, hidden, batch_first=True, bidirectional=True)
                self.drop = nn.Dropout(dropout)
                self.out = nn.Linear(2 * hidden, c)

            def forward(self, x, mask):
                lengths = mask.sum(1).clamp(min=1).cpu()
                packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                h, _ = self.gru(packed)
                h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
                m = mask.unsqueeze(-1).float()
                return self.out(self.drop((h * m).sum(1) / m.sum(1).clamp(min=1)))

        return Net()


HEADS = {"linear": Linear, "mlp": MLP, "temporal": Temporal}


def check_options(name: str, options: dict | None) -> dict:
    """``models.<name>`` of a clip head or of a CNN on spectrograms (``avcache.classification.cnns``)."""
    from avcache.classification.cnns import CNNS, check_cnn_options

    if name in CNNS:
        return check_cnn_options(name, options)
    if name not in HEADS:
        raise ParamsError(
            f"params.yaml: model {name!r} is not a clip head or a spectrogram CNN; a clip dataset takes one of "
            f"{', '.join([*HEADS, *CNNS])}"
        )
    if isinstance(options, dict) and "inputs" in options:
        raise ParamsError(
            f"params.yaml: models.{name}.inputs is not an option: the top-level `inputs` "
            "([audio], [visual] or [audio, visual]) selects the caches every model reads"
        )
    return check_call(HEADS[name], options, f"models.{name}", skip=("inputs",))
