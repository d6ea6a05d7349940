"""wav2vec 2.0 through transformers (``Wav2Vec2Model``; base by default).

Frames every 320 samples (20 ms) with a 400-sample receptive field at 16 kHz, from the conv
encoder (``layer: conv``), the last transformer layer (``last``, default) or any hidden state
(an integer). ``model`` is a Hugging Face model id or a local folder (``save_pretrained`` layout
with its preprocessor config); offline, download it once and point ``model`` at the folder.
"""

from __future__ import annotations

from avcache.extraction.extractors import hf
from avcache.extraction.extractors.base import AudioExtractor
from avcache.extraction.extractors.waveform import check_variant, conv_geometry, frames_to_rows


class Wav2Vec2(AudioExtractor):
    name = "wav2vec2"
    sample_rate = 16000
    resampler = "soxr_hq"  # its examples load 16-kHz audio with librosa / soundfile

    def __init__(
        self, model: str = "facebook/wav2vec2-base", layer: str | int = "last", variant: str = "standard", **kw
    ):
        super().__init__(**kw)
        self.model_id, self.layer = model, layer
        self.variant = check_variant(self.name, variant)
        if not (layer in ("conv", "last") or isinstance(layer, int)):
            raise ValueError(f"wav2vec2 layer must be 'conv', 'last' or a hidden-state index, got {layer!r}")
        from transformers import AutoFeatureExtractor, Wav2Vec2Model

        net, self.features = hf.load(self.name, model, Wav2Vec2Model, AutoFeatureExtractor)
        self.net = self.torch_module(net)
        cfg = self.net.config
        self.field, self.stride = conv_geometry(cfg.conv_kernel, cfg.conv_stride)

    def describe(self):
        return {
            "extractor": self.name,
            **hf.describe(self.model_id),
            "layer": str(self.layer),
            "variant": self.variant,
            "input": f"16 kHz, frames every {self.stride} samples, receptive field {self.field}",
        }

    def _frames(self, wave):
        x = self.features(wave, sampling_rate=self.sample_rate, return_tensors="pt").input_values
        with self.torch_inference():
            x = x.to(self.torch_device())
            out = self.net(x, output_hidden_states=isinstance(self.layer, int))
        if self.layer == "conv":
            h = out.extract_features
        elif self.layer == "last":
            h = out.last_hidden_state
        else:
            h = out.hidden_states[self.layer]
        return h[0].float().cpu().numpy()

    def embed(self, samples):
        return frames_to_rows(self._frames, samples, self.sample_rate, self.variant, self.field, self.stride)
