"""ConvNeXt (keras.applications); XLarge stage 3 block 2 (its last) by default: 7x7x2048 at 224 px.

``size`` picks the family member (tiny, small, base, large, xlarge); the thesis used xlarge and
reduced the 2048 channels by PCA to 204 or 490.
"""
from __future__ import annotations

from extract.extractors.shared.keras_apps import KerasVisualExtractor

SIZES = ("tiny", "small", "base", "large", "xlarge")
GMACS = {"tiny": 4.5, "small": 8.7, "base": 15.4, "large": 34.4, "xlarge": 60.9}  # Liu et al. 2022, whole model


def app_name(size: str) -> str:
    return "ConvNeXtXLarge" if size == "xlarge" else f"ConvNeXt{size.capitalize()}"


def stage3_layer(size: str) -> str:
    """The last block of stage 3 (the thesis's "stage 3 block 2 identity")."""
    return f"convnext_{size}_stage_3_block_2_identity"


class ConvNeXt(KerasVisualExtractor):
    name = "convnext"

    def __init__(self, size: str = "xlarge", frames_per_second: int = 16, weights: str | None = None,
                 input_size: int | None = None, layer: str | None = None, batch_size: int = 8):
        if size not in SIZES:
            raise ValueError(f"convnext size must be one of {SIZES}, got {size!r}")
        self.app, self.layer = app_name(size), stage3_layer(size)
        self.weights_file = f"convnext_{size}_notop.h5"
        self.flops_per_frame = (2 * GMACS[size] * 1e9, 224)  # an upper bound: stage 4 is not run
        super().__init__(frames_per_second, weights, input_size, layer, batch_size)
