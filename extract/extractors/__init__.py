"""The extractor registry: a name in params.yaml -> the class that builds it.

Adding an extractor is one module in this folder plus one line below (and its options under
``extractors.<name>`` in params.yaml). Code used by several extractors lives in ``shared/``;
each extraction stage depends on exactly the files its extractor imports (``avcache.lineage``).
"""
from __future__ import annotations

import importlib

from avcache.params import ParamsError, check_call
from extract.extractors.accel import DeviceError  # noqa: F401
from extract.extractors.base import Extractor, WeightsNotFound  # noqa: F401

REGISTRY = {
    # audio
    "vggish": "extract.extractors.vggish:VGGish",
    "yamnet": "extract.extractors.yamnet:YAMNet",
    "openl3": "extract.extractors.openl3:OpenL3",
    "wav2vec": "extract.extractors.wav2vec:Wav2Vec",
    "vq_wav2vec": "extract.extractors.vq_wav2vec:VQWav2Vec",
    "wav2vec2": "extract.extractors.wav2vec2:Wav2Vec2",
    "musicnn": "extract.extractors.musicnn:Musicnn",
    # visual
    "vgg19": "extract.extractors.vgg19:VGG19",
    "efficientnet": "extract.extractors.efficientnet:EfficientNet",
    "efficientnet_b7": "extract.extractors.efficientnet_b7:EfficientNetB7",
    "efficientnet_v2l": "extract.extractors.efficientnet_v2l:EfficientNetV2L",
    "convnext": "extract.extractors.convnext:ConvNeXt",
    "maskformer": "extract.extractors.maskformer:MaskFormer",
    # the AVE authors' released features, imported rather than extracted
    "vggish_release": "extract.import_release:VGGishRelease",
    "vgg19_release": "extract.import_release:VGG19Release",
}


def get(name: str) -> type[Extractor]:
    if name not in REGISTRY:
        raise ParamsError(f"unknown extractor {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, options: dict, device: str = "cpu", precision: str = "fp32") -> Extractor:
    """Build an extractor from its params.yaml options (``reduction`` is not the extractor's), its
    model on ``device`` computing in ``precision`` (``extract.device`` / ``extract.precision``)."""
    from extract.extractors import accel
    cls = get(name)
    options = check_call(cls, options, f"extractors.{name}")
    accel.check(device, precision)
    extractor = cls.__new__(cls)
    extractor.device_spec, extractor.precision = device, precision  # before the model loads
    extractor.check_precision()
    extractor.preflight()  # a missing package stops here, before any weights load
    extractor.__init__(**options)
    extractor.check_precision()  # fp32_only may depend on the options (EfficientNet's variants)
    return extractor
