"""VGG-19 (keras.applications), block5_pool: 7x7x512 at 224 px, the AVE baseline's visual feature."""
from __future__ import annotations

from extract.extractors.shared.keras_apps import KerasVisualExtractor


class VGG19(KerasVisualExtractor):
    name = "vgg19"
    app = "VGG19"
    weights_file = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    layer = "block5_pool"
    flops_per_frame = (2 * 19.6e9, 224)  # Simonyan & Zisserman: 19.6 G multiply-adds

    def preprocess(self, x):
        from keras.applications import vgg19
        return vgg19.preprocess_input(x)  # caffe: BGR, ImageNet mean subtracted
