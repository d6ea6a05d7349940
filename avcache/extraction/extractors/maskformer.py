"""MaskFormer (Swin-L, ADE20k) through transformers: per-frame query logits, reduced as the thesis did.

- ``output: class``: ``class_queries_logits`` [100 queries, 151]; consecutive groups of 10
  queries are averaged, giving 10 rows of 151 (cached as 10 x 1 x 151 regions per second).
- ``output: mask``: ``masks_queries_logits`` [100, H/4, W/4] averaged over queries, then groups
  of 10 rows averaged: 16 x 160 at 640 px (cached as 16 x 1 x 160).
``model`` is a Hugging Face id or a local ``save_pretrained`` folder with its image processor.
"""

from __future__ import annotations

import numpy as np

from avcache.extraction.extractors import hf
from avcache.extraction.extractors.base import VisualExtractor
from avcache.extraction.reduce import ChannelMean


def group_mean(x: np.ndarray, axis: int, groups: int) -> np.ndarray:
    """Average ``groups`` consecutive runs of ``axis`` (runs differ by at most one element)."""
    return np.moveaxis(ChannelMean(groups)(np.moveaxis(x, axis, -1)), -1, axis)


class MaskFormer(VisualExtractor):
    name = "maskformer"
    spatial = False  # its "regions" are groups of queries (or mask rows), not places in the frame

    def __init__(
        self,
        model: str = "facebook/maskformer-swin-large-ade",
        output: str = "class",
        frames_per_second: int = 16,
        input_size: int = 640,
        groups: int | None = None,
        batch_size: int = 2,
        **kw,
    ):
        super().__init__(frames_per_second, **kw)
        if output not in ("class", "mask"):
            raise ValueError(f"maskformer output must be 'class' or 'mask', got {output!r}")
        self.model_id, self.output, self.batch_size = model, output, batch_size
        self.groups = groups or (10 if output == "class" else 16)
        self.image_size = (input_size, input_size)
        from transformers import AutoImageProcessor, MaskFormerForInstanceSegmentation

        net, self.processor = hf.load(self.name, model, MaskFormerForInstanceSegmentation, AutoImageProcessor)
        self.net = self.torch_module(net)

    def describe(self):
        layer = (
            "class_queries_logits, mean over groups of queries"
            if self.output == "class"
            else "masks_queries_logits, mean over queries, then over groups of rows"
        )
        return {
            "extractor": self.name,
            **hf.describe(self.model_id),
            "layer": f"{layer} ({self.groups} groups)",
            "input_size": list(self.image_size),
            "frames_per_second": self.frames_per_second,
        }

    def embed(self, images):
        rows = []
        for i in range(0, len(images), self.batch_size):
            x = self.processor(
                images=list(images[i : i + self.batch_size]), do_resize=False, return_tensors="pt"
            ).pixel_values
            with self.torch_inference():
                out = self.net(pixel_values=x.to(self.torch_device()))
                cls, masks = out.class_queries_logits.float().cpu(), out.masks_queries_logits.float().cpu()
            if self.output == "class":
                r = group_mean(cls.numpy(), 1, self.groups)  # [b, groups, labels+1]
            else:
                r = group_mean(masks.numpy().mean(1), 1, self.groups)  # [b, groups, W/4]
            rows.append(r[:, :, None, :])  # regions: groups x 1
        return np.concatenate(rows).astype(np.float32)
