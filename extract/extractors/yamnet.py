"""YAMNet from TF Hub: per 0.96-s window (hop 0.48 s) the 1024-d embedding or the 521 class scores."""
from __future__ import annotations

from extract.extractors.shared.tfhub import HubAudioExtractor


class YAMNet(HubAudioExtractor):
    name = "yamnet"
    default_handle = "https://tfhub.dev/google/yamnet/1"
    hop = 0.48
    flops_per_second = 2 * 69.2e6 / hop  # its README: 69.2 M multiply-adds per 0.96-s frame

    def __init__(self, handle: str | None = None, layer: str = "embeddings"):
        if layer not in ("embeddings", "scores"):
            raise ValueError(f"yamnet layer must be 'embeddings' or 'scores', got {layer!r}")
        self.layer = layer
        super().__init__(handle)

    def outputs(self, waveform):
        scores, embeddings, _ = self.model(waveform)
        return (embeddings if self.layer == "embeddings" else scores).numpy()
