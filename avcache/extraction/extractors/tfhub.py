"""Shared by the TF Hub audio models (VGGish, YAMNet): loading through ``tensorflow_hub`` and framing.

``handle`` is what ``hub.load`` takes: the tfhub.dev URL (the default, needs the network or a
populated ``TFHUB_CACHE_DIR``) or a local folder holding the unpacked SavedModel. Both models
take a mono 16 kHz float32 waveform and return one row per 0.96-s window. YAMNet's ``handle`` may
also be a ``.tflite`` file (a conversion of ``yamnet/1``, run with ``ai-edge-litert``, on the CPU):
its provenance names the file and its sha256, never ``yamnet/1`` itself.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from avcache import runtime
from avcache.contract.io import sha256_files
from avcache.extraction.extractors.base import AudioExtractor, WeightsNotFound
from avcache.runtime import DeviceError

WINDOW = 0.96  # seconds per example, both models


def load_hub(name: str, handle: str):
    runtime.quiet_tensorflow()
    try:
        import tensorflow_hub as hub
    except ImportError as e:
        raise WeightsNotFound(f"{name}: tensorflow_hub is not installed ({e}); it is in requirements.lock") from None
    try:
        return hub.load(handle)
    except Exception as e:  # offline hub URLs fail fast with OSError / URLError / ValueError
        raise WeightsNotFound(
            f"{name}: could not load {handle!r} with tensorflow_hub.load ({type(e).__name__}: "
            f"{str(e)[:200]}). Offline, download the SavedModel once (tfhub.dev / Kaggle Models, "
            f"'{name}' TF2 model), unpack it and set extractors.{name}.handle to that folder, or "
            "point TFHUB_CACHE_DIR at a cache that already holds it."
        ) from None


def savedmodel_sha256(handle: str) -> str | None:
    """Hash of a local SavedModel's graph and variables (None for a remote handle)."""
    folder = Path(handle)
    if not folder.is_dir():
        return None
    return sha256_files(*(p for p in sorted(folder.rglob("*")) if p.is_file()), root=folder)


class HubAudioExtractor(AudioExtractor):
    """A TF Hub model called on the whole 10-s waveform; row k is centred at k*hop + 0.48 s."""

    sample_rate = 16000
    resampler = "kaiser_best"  # vggish_input.waveform_to_examples and YAMNet's inference use resampy
    hop = WINDOW
    default_handle = ""
    layer = "embedding"

    fp32_only = "a TF Hub SavedModel computes in the dtypes its graph was saved with"

    def __init__(self, handle: str | None = None, **kw):
        super().__init__(**kw)
        self.handle = handle or self.default_handle
        with self.tf_scope():
            self.model = load_hub(self.name, self.handle)

    def describe(self):
        import tensorflow as tf
        import tensorflow_hub as hub

        return {
            "extractor": self.name,
            "weights": self.handle,
            "layer": self.layer,
            "weights_sha256": savedmodel_sha256(self.handle),
            "input": f"{self.sample_rate} Hz mono, {WINDOW}-s windows, hop {self.hop} s",
            "versions": {"tensorflow": tf.__version__, "tensorflow_hub": hub.__version__},
        }

    def outputs(self, waveform: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, samples):
        with self.tf_scope():
            rows = np.asarray(self.outputs(samples.astype(np.float32)), np.float32)
        times = np.arange(len(rows)) * self.hop + WINDOW / 2
        keep = times < len(samples) / self.sample_rate  # windows centred in the end padding go
        return rows[keep], times[keep]


class VGGish(HubAudioExtractor):
    """VGGish (Hershey et al.) from TF Hub: the 128-d embedding of each 0.96-s window (the AVE baseline audio)."""

    name = "vggish"
    default_handle = "https://tfhub.dev/google/vggish/1"

    def outputs(self, waveform):
        return self.model(waveform).numpy()


class TFLiteYAMNet:
    """A ``.tflite`` conversion of YAMNet run by ``ai-edge-litert``: the input resized to each
    waveform's length, the outputs told apart by their width (521 scores, 1024 embeddings), since
    converters rename them (``Identity``, ``Identity_1``...)."""

    WIDTHS = {"scores": 521, "embeddings": 1024}
    THREADS = 2  # fixed, so the kernels' split of the work does not depend on the machine

    def __init__(self, path: str):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise WeightsNotFound(
                f"yamnet: {path} is a .tflite file, which needs ai-edge-litert ({e}); "
                "install it with `make setup-extras` (requirements-extras.lock)"
            ) from None
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=self.THREADS)
        except (ValueError, RuntimeError) as e:
            raise WeightsNotFound(f"yamnet: {path} does not load as a TFLite model: {str(e)[:200]}") from None
        inputs = self.interpreter.get_input_details()
        widths = {int(o["shape"][-1]): o["index"] for o in self.interpreter.get_output_details()}
        if len(inputs) != 1 or not set(self.WIDTHS.values()) <= set(widths):
            raise WeightsNotFound(
                f"yamnet: {path} is not YAMNet: it has {len(inputs)} input(s) and outputs of widths "
                f"{sorted(widths)} (YAMNet: one waveform input; 521 scores and 1024 embeddings)"
            )
        self.input = inputs[0]["index"]
        self.output = {layer: widths[w] for layer, w in self.WIDTHS.items()}
        self.length = None

    def __call__(self, waveform: np.ndarray, layer: str) -> np.ndarray:
        if len(waveform) != self.length:
            self.interpreter.resize_tensor_input(self.input, [len(waveform)], strict=False)
            self.interpreter.allocate_tensors()
            self.length = len(waveform)
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(waveform, np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output[layer]).copy()


class YAMNet(HubAudioExtractor):
    """YAMNet from TF Hub, or from a ``.tflite`` file: per 0.96-s window (hop 0.48 s) the 1024-d
    embedding or the 521 class scores."""

    name = "yamnet"
    default_handle = "https://tfhub.dev/google/yamnet/1"
    hop = 0.48
    flops_per_second = 2 * 69.2e6 / hop  # its README: 69.2 M multiply-adds per 0.96-s frame

    def __init__(self, handle: str | None = None, layer: str = "embeddings", **kw):
        if layer not in ("embeddings", "scores"):
            raise ValueError(f"yamnet layer must be 'embeddings' or 'scores', got {layer!r}")
        self.layer = layer
        self.tflite = str(handle or "").endswith(".tflite")
        if not self.tflite:
            super().__init__(handle, **kw)
            return
        AudioExtractor.__init__(self, **kw)
        if self.device_spec not in ("auto", "cpu"):
            raise DeviceError(
                f"yamnet: a .tflite handle runs on the CPU only (ai-edge-litert); set extract.device "
                f"to cpu or auto, not {self.device_spec!r}"
            )
        self.device, self.handle = "cpu", str(handle)
        if not Path(self.handle).is_file():
            raise WeightsNotFound(
                f"yamnet: TFLite file {self.handle} does not exist; set extractors.yamnet.handle to "
                "the .tflite file (e.g. ../shared/weights/yamnet-int8.tflite) or a TF Hub handle"
            )
        self.model = TFLiteYAMNet(self.handle)

    def tf_scope(self):
        return contextlib.nullcontext() if self.tflite else super().tf_scope()

    def describe(self):
        if not self.tflite:
            return super().describe()
        from importlib.metadata import version

        return {
            "extractor": self.name,
            "weights": self.handle,
            "weights_sha256": sha256_files(self.handle),
            "network": f"YAMNet as converted to TFLite in {Path(self.handle).name} (not TF Hub yamnet/1 itself)",
            "layer": self.layer,
            "input": f"{self.sample_rate} Hz mono, {WINDOW}-s windows, hop {self.hop} s",
            "versions": {"ai-edge-litert": version("ai-edge-litert")},
        }

    def outputs(self, waveform):
        if self.tflite:
            return self.model(waveform, self.layer)
        scores, embeddings, _ = self.model(waveform)
        return (embeddings if self.layer == "embeddings" else scores).numpy()
