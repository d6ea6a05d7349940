"""Frame times and the thesis's three ways of turning a speech model's frames into 10 rows.

- ``standard``: the model runs on the whole clip; a frame belongs to the second holding the
  centre of its receptive field.
- ``per_second``: the model runs on each 1-s segment on its own (no context across seconds).
- ``np_mean``: the model runs on the whole clip and its frames are cut into 10 equal runs by
  index, ignoring the receptive field (a plain numpy mean over frame chunks).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from avcache.contract.dataset import SEGMENTS

VARIANTS = ("standard", "per_second", "np_mean")


def check_variant(name: str, variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"{name} variant must be one of {VARIANTS}, got {variant!r}")
    return variant


def conv_geometry(kernels, strides) -> tuple[int, int]:
    """(receptive field, total stride) in samples of a stack of 1-D convolutions."""
    field, jump = 1, 1
    for k, s in zip(kernels, strides):
        field += (k - 1) * jump
        jump *= s
    return field, jump


def frames_to_rows(
    run: Callable[[np.ndarray], np.ndarray],
    samples: np.ndarray,
    sr: int,
    variant: str,
    field: int,
    stride: int,
    seconds: int = SEGMENTS,
):
    """(values [n, d], times [n]) for ``pool_seconds``; ``run`` maps a waveform to frames [T, d]."""
    if variant == "per_second":
        parts = [run(samples[t * sr : (t + 1) * sr]) for t in range(seconds)]
        return (
            np.concatenate(parts).astype(np.float32),
            np.concatenate([np.full(len(p), t + 0.5) for t, p in enumerate(parts)]),
        )
    frames = run(samples).astype(np.float32)
    if variant == "np_mean":
        chunk = np.concatenate(
            [np.full(len(c), t + 0.5) for t, c in enumerate(np.array_split(np.arange(len(frames)), seconds))]
        )
        return frames, chunk
    times = (np.arange(len(frames)) * stride + field / 2) / sr
    keep = times < len(samples) / sr
    return frames[keep], times[keep]
