"""EfficientNetB7 (keras.applications, 600 px, top_activation 19x19x2560): the thesis's best visual features."""
from extract.extractors.shared.efficientnet import EfficientNet


class EfficientNetB7(EfficientNet):
    name = "efficientnet_b7"
    default_variant = "b7"
