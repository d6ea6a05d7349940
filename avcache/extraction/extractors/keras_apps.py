"""Feature maps from ``keras.applications`` models (VGG-19, EfficientNet B7/V2L, ConvNeXt).

``weights: null`` asks Keras for the ImageNet weights, which it first looks for in
``~/.keras/models/<file>`` and downloads otherwise; offline, put the file there or set
``weights`` to a weights file (Keras's ``.h5`` or ``.weights.h5``). ``weights`` never means
random: a file that does not load stops the stage.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from avcache import runtime
from avcache.contract.io import sha256_files
from avcache.extraction.extractors.base import VisualExtractor, WeightsNotFound, describe_source


def keras_cache(fname: str) -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / fname


def build(extractor, app: str, weights_file: str, weights: str | None, size: int, layer: str | None):
    """(feature model, weights path used, where they came from) for keras.applications.<app>,
    built on the extractor's device under the dtype policy of its precision."""
    name = extractor.name
    runtime.quiet_tensorflow()
    import keras

    runtime.tf_deterministic()
    if weights is not None and not Path(weights).is_file():
        raise WeightsNotFound(
            f"{name}: weights file {weights} does not exist; set "
            f"extractors.{name}.weights to a Keras weights file ({weights_file})"
        )
    cached = keras_cache(weights_file)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with extractor.tf_scope(), runtime.keras_policy(extractor.precision, extractor.tf_device()):
                base = getattr(keras.applications, app)(
                    include_top=False, weights=weights or "imagenet", input_shape=(size, size, 3)
                )
        partial = [w for w in caught if "freshly-initialized" in str(w.message)]
        if partial:  # Keras loaded the file only in part: those layers would stay random
            raise ValueError(f"{len(partial)} layer groups were not in the file: {partial[0].message}")
    except runtime.DeviceError:
        raise
    except Exception as e:  # offline download failures, or a file for another architecture
        raise WeightsNotFound(
            f"{name}: keras.applications.{app} could not load "
            f"{weights or 'its ImageNet weights'} ({type(e).__name__}: {str(e)[:200]}). Offline, put "
            f"{weights_file} at {cached} or set extractors.{name}.weights to a weights file."
        ) from None
    out = base.get_layer(layer).output if layer else base.output
    with extractor.tf_scope():
        model = keras.Model(base.input, out)
    path = weights or str(cached)
    source = describe_source(weights) if weights else f"keras.applications ImageNet ({weights_file})"
    return model, path, source


def predict(extractor, model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's float32 outputs, batch by batch, on the extractor's device."""
    from keras import ops

    with extractor.tf_scope():
        return np.concatenate(
            [
                ops.convert_to_numpy(ops.cast(model(x[i : i + batch_size], training=False), "float32"))
                for i in range(0, len(x), batch_size)
            ]
        ).astype(np.float32)


class KerasVisualExtractor(VisualExtractor):
    """Subclasses set ``app``, ``weights_file``, ``size``, ``layer`` and ``preprocess``."""

    app = weights_file = ""
    size = 224
    layer: str | None = None

    def __init__(
        self,
        frames_per_second: int = 16,
        weights: str | None = None,
        input_size: int | None = None,
        layer: str | None = None,
        batch_size: int = 8,
        **kw,
    ):
        super().__init__(frames_per_second, **kw)
        self.size = input_size or self.size
        self.layer = layer or self.layer
        self.batch_size = batch_size
        self.image_size = (self.size, self.size)
        self.model, self.weights, self.source = build(self, self.app, self.weights_file, weights, self.size, self.layer)

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        return x  # models with preprocessing built in take 0..255 RGB

    def describe(self):
        import keras

        return {
            "extractor": self.name,
            "weights": f"keras.applications.{self.app} ImageNet",
            "weights_source": self.source,
            "weights_sha256": sha256_files(self.weights) if Path(self.weights).is_file() else None,
            "layer": f"{self.layer or 'last'} {tuple(self.model.output.shape[1:])}",
            "input_size": list(self.image_size),
            "frames_per_second": self.frames_per_second,
            "versions": {"keras": keras.__version__},
        }

    def embed(self, images):
        return predict(self, self.model, self.preprocess(images.astype(np.float32)), self.batch_size)


class VGG19(KerasVisualExtractor):
    """VGG-19 (keras.applications), block5_pool: 7x7x512 at 224 px, the AVE baseline's visual feature."""

    name = "vgg19"
    app = "VGG19"
    weights_file = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    layer = "block5_pool"
    flops_per_frame = (2 * 19.6e9, 224)  # Simonyan & Zisserman: 19.6 G multiply-adds

    def preprocess(self, x):
        from keras.applications import vgg19

        return vgg19.preprocess_input(x)  # caffe: BGR, ImageNet mean subtracted


SIZES = ("tiny", "small", "base", "large", "xlarge")
GMACS = {"tiny": 4.5, "small": 8.7, "base": 15.4, "large": 34.4, "xlarge": 60.9}  # Liu et al. 2022, whole model


def app_name(size: str) -> str:
    return "ConvNeXtXLarge" if size == "xlarge" else f"ConvNeXt{size.capitalize()}"


def stage3_layer(size: str) -> str:
    """The last block of stage 3 (the thesis's "stage 3 block 2 identity")."""
    return f"convnext_{size}_stage_3_block_2_identity"


class ConvNeXt(KerasVisualExtractor):
    """ConvNeXt (keras.applications); XLarge stage 3 block 2 (its last) by default: 7x7x2048 at 224 px.

    ``size`` picks the family member (tiny, small, base, large, xlarge); the thesis used xlarge and
    reduced the 2048 channels by PCA to 204 or 490.
    """

    name = "convnext"

    def __init__(
        self,
        size: str = "xlarge",
        frames_per_second: int = 16,
        weights: str | None = None,
        input_size: int | None = None,
        layer: str | None = None,
        batch_size: int = 8,
        **kw,
    ):
        if size not in SIZES:
            raise ValueError(f"convnext size must be one of {SIZES}, got {size!r}")
        self.app, self.layer = app_name(size), stage3_layer(size)
        self.weights_file = f"convnext_{size}_notop.h5"
        self.flops_per_frame = (2 * GMACS[size] * 1e9, 224)  # an upper bound: stage 4 is not run
        super().__init__(frames_per_second, weights, input_size, layer, batch_size, **kw)
