"""The extractor registry: a name in params.yaml -> the class that builds it.

Adding an extractor is one class (in its family's module, e.g. ``keras_apps.py``, or a module of
its own in this folder) plus one line below, and its options under ``extractors.<name>`` in
params.yaml. Helpers used by several families (``hf.py``, ``waveform.py``) sit beside them; each
extraction stage depends on exactly the files its extractor imports (``avcache.lineage``).
"""

from __future__ import annotations

import importlib

from avcache.contract.params import ParamsError, check_call
from avcache.extraction.extractors.base import Extractor, WeightsNotFound  # noqa: F401
from avcache.runtime import DeviceError  # noqa: F401

REGISTRY = {
    # audio
    "vggish": "avcache.extraction.extractors.tfhub:VGGish",
    "yamnet": "avcache.extraction.extractors.tfhub:YAMNet",
    "openl3": "avcache.extraction.extractors.openl3:OpenL3",
    "wav2vec": "avcache.extraction.extractors.fairseq_wav2vec:Wav2Vec",
    "vq_wav2vec": "avcache.extraction.extractors.fairseq_wav2vec:VQWav2Vec",
    "wav2vec2": "avcache.extraction.extractors.wav2vec2:Wav2Vec2",
    "musicnn": "avcache.extraction.extractors.musicnn:Musicnn",
    "logmel": "avcache.extraction.extractors.spectrogram:LogMel",
    "mfcc": "avcache.extraction.extractors.spectrogram:MFCC",
    "hear": "avcache.extraction.extractors.hear:HEAR",
    # visual
    "vgg19": "avcache.extraction.extractors.keras_apps:VGG19",
    "efficientnet": "avcache.extraction.extractors.efficientnet:EfficientNet",
    "efficientnet_lite1": "avcache.extraction.extractors.efficientnet:EfficientNetLite1",
    "efficientnet_lite2": "avcache.extraction.extractors.efficientnet:EfficientNetLite2",
    "efficientnet_b7": "avcache.extraction.extractors.efficientnet:EfficientNetB7",
    "efficientnet_v2l": "avcache.extraction.extractors.efficientnet:EfficientNetV2L",
    "convnext": "avcache.extraction.extractors.keras_apps:ConvNeXt",
    "maskformer": "avcache.extraction.extractors.maskformer:MaskFormer",
    "torch_module": "avcache.extraction.extractors.torch_module:TorchModule",
    # the AVE authors' released features, imported rather than extracted
    "vggish_release": "avcache.extraction.importers:VGGishRelease",
    "vgg19_release": "avcache.extraction.importers:VGG19Release",
}


def get(name: str) -> type[Extractor]:
    if name not in REGISTRY:
        raise ParamsError(f"unknown extractor {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, options: dict, device: str = "cpu", precision: str = "fp32") -> Extractor:
    """Build an extractor from its params.yaml options (``reduction`` is not the extractor's), its
    model on ``device`` computing in ``precision`` (``extract.device`` / ``extract.precision``)."""
    from avcache import runtime

    cls = get(name)
    options = check_call(cls, options, f"extractors.{name}")
    runtime.check(device, precision)
    return cls(**options, device=device, precision=precision)
