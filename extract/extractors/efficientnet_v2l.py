"""EfficientNetV2L (keras.applications, 480 px, top_activation 15x15x1280)."""
from extract.extractors.shared.efficientnet import EfficientNet


class EfficientNetV2L(EfficientNet):
    name = "efficientnet_v2l"
    default_variant = "v2l"
