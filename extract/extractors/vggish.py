"""VGGish (Hershey et al.) from TF Hub: the 128-d embedding of each 0.96-s window (the AVE baseline audio)."""
from __future__ import annotations

from extract.extractors.shared.tfhub import HubAudioExtractor


class VGGish(HubAudioExtractor):
    name = "vggish"
    default_handle = "https://tfhub.dev/google/vggish/1"

    def outputs(self, waveform):
        return self.model(waveform).numpy()
