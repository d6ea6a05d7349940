"""The extractor registry: a name in params.yaml -> the class that builds it.

Adding an extractor is one module in this folder, named like its registry key (dvc.yaml tracks
``extract/extractors/<name>.py`` as the stage's code), plus one line below. Code used by several
extractors lives in ``shared/``, which every extraction stage depends on.
"""
from __future__ import annotations

import importlib
import inspect

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
}


def get(name: str) -> type[Extractor]:
    if name not in REGISTRY:
        raise KeyError(f"unknown extractor {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, options: dict) -> Extractor:
    """Build an extractor from its params.yaml options (``reduction`` is not the extractor's)."""
    cls = get(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(f"extractors.{name}: unknown option(s) {sorted(unknown)}; "
                         f"accepted: {sorted(accepted)}")
    return cls(**options)
