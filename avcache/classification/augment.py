"""Augmentation of cached spectrograms, on the training device, from one seeded generator.

The cache holds the expensive part (decoding, resampling, STFT, mel); what a CNN trainer varies
from epoch to epoch is applied here to a batch ``x`` [B, T, M] (T frames, M bands) already on its
device. Every random draw comes from an explicit ``torch.Generator`` on that device, so the same
seed on the same device gives the same batches (a CUDA generator draws other numbers than a CPU
one: a run is reproducible per device kind). ``Augment`` is the object a trainer holds: on in
``train()``, the identity in ``eval()``.

- ``spec_augment``: SpecAugment's frequency and time masks (Park et al. 2019): each mask's width
  is uniform in [0, width], its start uniform where it fits. Masked cells take the example's
  mean value: SpecAugment masks with zero *after* normalising each log-mel to mean zero, and a
  cache's dB values are not normalised (0 dB is loud, not neutral).
- ``mixup``: mixup (Zhang et al. 2018): ``lam ~ Beta(alpha, alpha)`` per example, mixed with a
  random other example of the batch, labels mixed alike. ``between_class``: BC learning
  (Tokozume et al. 2018): the partner is of another class and the ratio ``r ~ U(0, 1)``. BC mixes
  waveforms with a gain correction that needs the waveform; on cached dB log-mels the nearest
  physical equivalent is ``mix_in: power_db``, mixing the powers
  (``10 log10(r 10^(a/10) + (1 - r) 10^(b/10))``); ``values`` mixes the tensor's values linearly
  (the only choice for MFCCs).
- ``random_crop_or_shift``: a clip longer than the model's ``window`` frames gives a random
  ``window``-frame crop of its valid frames; a shorter one is placed at a random offset in the
  window, the rest filled with the clip's quietest value (the padding's silence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from avcache.contract.params import ParamsError, from_params


def _uniform_int(high: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One integer uniform in [0, high] per entry of ``high`` (int64, on its device)."""
    u = torch.rand(high.shape, generator=gen, device=high.device)
    return torch.minimum((u * (high + 1)).floor().long(), high)


def spec_augment(
    x: torch.Tensor,
    freq_masks: int,
    freq_width: int,
    time_masks: int,
    time_width: int,
    gen: torch.Generator,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x`` [B, T, M] with ``freq_masks`` band masks and ``time_masks`` frame masks per example;
    time masks fall inside the valid frames when ``mask`` [B, T] (bool) is given."""
    b, t, m = x.shape
    dev = x.device
    valid = mask if mask is not None else torch.ones(b, t, dtype=torch.bool, device=dev)
    n_valid = valid.sum(1).float().clamp(min=1)
    fill = ((x * valid[..., None]).sum((1, 2)) / (n_valid * m))[:, None, None]
    hit = torch.zeros(b, t, m, dtype=torch.bool, device=dev)
    bands, frames = torch.arange(m, device=dev), torch.arange(t, device=dev)
    for _ in range(freq_masks):
        w = _uniform_int(torch.full((b,), min(freq_width, m), device=dev), gen)
        f0 = _uniform_int(m - w, gen)
        hit |= ((bands >= f0[:, None]) & (bands < (f0 + w)[:, None]))[:, None, :]
    length, first = valid.sum(1), valid.int().argmax(1)  # valid frames are one run (a prefix, or shifted)
    for _ in range(time_masks):
        w = torch.minimum(_uniform_int(torch.full((b,), time_width, device=dev), gen), length)
        t0 = first + _uniform_int(length - w, gen)
        hit |= ((frames >= t0[:, None]) & (frames < (t0 + w)[:, None]))[:, :, None]
    return torch.where(hit, fill.to(x.dtype), x)


def _beta(alpha: float, n: int, gen: torch.Generator) -> np.ndarray:
    """``n`` draws of Beta(alpha, alpha), seeded from ``gen`` (torch samples Beta without a generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    return np.random.default_rng(seed).beta(alpha, alpha, n)


def _mix(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor, mix_in: str) -> torch.Tensor:
    r = r.to(a.dtype)[:, None, None]
    if mix_in == "power_db":
        return 10 * torch.log10(r * torch.pow(10.0, a / 10) + (1 - r) * torch.pow(10.0, b / 10))
    return r * a + (1 - r) * b


def mixup(
    x: torch.Tensor,
    y_onehot: torch.Tensor,
    alpha: float,
    gen: torch.Generator,
    between_class: bool = False,
    mix_in: Literal["values", "power_db"] = "values",
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(mixed x, mixed labels (rows sum to 1 for one-hot labels), the union of the two valid
    masks, the partner of each example). ``between_class``: BC learning (partner of another
    class where the batch has one, ratio uniform); else mixup with ratio Beta(alpha, alpha)."""
    b, dev = len(x), x.device
    if between_class:
        cls = y_onehot.argmax(1)
        score = torch.rand(b, b, generator=gen, device=dev)
        score = torch.where(cls[:, None] == cls[None, :], score - 2, score)
        score[torch.arange(b, device=dev), torch.arange(b, device=dev)] = -3  # never itself while another exists
        partner = score.argmax(1)
        partner = torch.where(cls[partner] == cls, torch.arange(b, device=dev), partner)  # one class only: no mixing
        r = torch.rand(b, generator=gen, device=dev)
        r = torch.where(partner == torch.arange(b, device=dev), torch.ones_like(r), r)
    else:
        partner = torch.randperm(b, generator=gen, device=dev)
        r = torch.as_tensor(_beta(alpha, b, gen), dtype=torch.float32, device=dev)
    xm = _mix(x, x[partner], r, mix_in)
    ym = r.to(y_onehot.dtype)[:, None] * y_onehot + (1 - r.to(y_onehot.dtype))[:, None] * y_onehot[partner]
    return xm, ym, (mask | mask[partner]) if mask is not None else None, partner


def random_crop_or_shift(
    x: torch.Tensor, valid_frames: torch.Tensor, window: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x [B, window, M], mask [B, window]): a random ``window``-frame crop of each clip's valid
    frames, or, for a clip with fewer, its valid frames at a random offset (the rest filled with
    its lowest valid value)."""
    b, t, m = x.shape
    dev = x.device
    valid = valid_frames.to(dev).long().clamp(min=1, max=t)
    frames = torch.arange(t, device=dev)
    low = torch.where((frames[None, :] < valid[:, None])[..., None], x, torch.inf).amin((1, 2))
    offset = _uniform_int((valid - window).abs(), gen)
    longer = valid > window
    pos = torch.arange(window, device=dev)[None, :]
    src = torch.where(longer[:, None], pos + offset[:, None], pos - offset[:, None])  # frame of x at each position
    inside = (src >= 0) & (src < valid[:, None])
    out = torch.gather(x, 1, src.clamp(0, t - 1)[..., None].expand(b, window, m))
    out = torch.where(inside[..., None], out, low[:, None, None].to(x.dtype))
    return out, inside


@dataclass(frozen=True)
class AugmentOptions:
    """Options of ``Augment`` (every one off by default): a trainer's params section,
    e.g. ``models.<cnn>.augment``, read with ``options(given, where)``."""

    freq_masks: int = 0
    freq_width: int = 0  # bands, the widest mask
    time_masks: int = 0
    time_width: int = 0  # frames, the widest mask
    mixup_alpha: float = 0.0  # 0: no mixup; Beta(alpha, alpha) ratios
    between_class: bool = False  # BC learning: partners of another class, ratio U(0, 1)
    mix_in: Literal["values", "power_db"] = "values"  # power_db: mix a dB log-mel's powers
    window: int | None = None  # frames the model sees: longer clips cropped, shorter shifted; null: all

    def check(self, where: str) -> None:
        counts = {"freq_masks": self.freq_masks, "freq_width": self.freq_width}
        counts |= {"time_masks": self.time_masks, "time_width": self.time_width}
        for k, v in counts.items():
            if v < 0:
                raise ParamsError(f"params.yaml: {where}.{k} must be >= 0, got {v}")
        if self.mixup_alpha < 0:
            raise ParamsError(f"params.yaml: {where}.mixup_alpha must be >= 0 (0: off), got {self.mixup_alpha}")
        if self.between_class and self.mixup_alpha == 0:
            raise ParamsError(
                f"params.yaml: {where}.between_class needs mixing on: set mixup_alpha > 0 (BC draws its ratio "
                "uniformly; alpha only switches it on)"
            )
        if self.window is not None and self.window < 1:
            raise ParamsError(f"params.yaml: {where}.window must be a positive number of frames or null")

    @property
    def mixing(self) -> bool:
        return self.mixup_alpha > 0


def options(given: dict | None, where: str = "augment") -> AugmentOptions:
    """``AugmentOptions`` from a params section: unknown keys and wrong types refused, naming them."""
    return from_params(AugmentOptions, given, where)


class Augment:
    """What a trainer calls on each batch: ``x, y, mask = augment(x, y, valid_frames)``.

    Training (the default, ``train()``): crop/shift to ``window``, then SpecAugment, then mixup.
    ``eval()``: the batch unchanged with the mask of its valid frames."""

    def __init__(self, opts: AugmentOptions, seed: int, device: str | torch.device = "cpu"):
        self.opts = opts
        self.gen = torch.Generator(device=torch.device(device)).manual_seed(int(seed))
        self.training = True

    def train(self) -> Augment:
        self.training = True
        return self

    def eval(self) -> Augment:
        self.training = False
        return self

    def __call__(
        self, x: torch.Tensor, y_onehot: torch.Tensor, valid_frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x [B, T', M], labels [B, C], valid mask [B, T']); T' is ``window`` when training with one."""
        o = self.opts
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < valid_frames.to(x.device)[:, None]
        if not self.training:
            return x, y_onehot, mask
        if o.window is not None:
            x, mask = random_crop_or_shift(x, valid_frames, o.window, self.gen)
        if o.freq_masks or o.time_masks:
            x = spec_augment(x, o.freq_masks, o.freq_width, o.time_masks, o.time_width, self.gen, mask)
        if o.mixing:
            x, y_onehot, mask, _ = mixup(x, y_onehot, o.mixup_alpha, self.gen, o.between_class, o.mix_in, mask)
        return x, y_onehot, mask
