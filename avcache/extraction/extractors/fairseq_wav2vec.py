"""fairseq wav2vec 1.0 / vq-wav2vec: checkpoints loaded with fairseq's own loader.

``load_model_ensemble_and_task`` is how fairseq loads them. fairseq 0.12 predates PyTorch 2.6,
whose ``torch.load`` refuses pickled configs by default; the checkpoint is loaded with that
check off (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` for the call only), so only use checkpoints from
a source you trust (fairseq's release URLs). Layers: ``z`` (conv feature encoder, one frame per
160 samples), ``q`` (vq-wav2vec's quantised z), ``c`` (the context network over z or q).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from avcache.contract.io import sha256_files
from avcache.extraction.extractors.base import AudioExtractor, WeightsNotFound, describe_source
from avcache.extraction.extractors.waveform import check_variant, conv_geometry, frames_to_rows


@contextmanager
def _trusted_pickle():
    old = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = old


class FairseqWav2Vec(AudioExtractor):
    """Subclasses set ``name``, ``layers`` (allowed), ``release`` (file name) and ``quantized``."""

    sample_rate = 16000
    resampler = "soxr_hq"  # fairseq reads 16-kHz files with soundfile; librosa's default to get there
    layers: tuple[str, ...] = ("z", "c")
    release = ""
    quantized = False

    def __init__(self, checkpoint: str | None = None, layer: str = "c", variant: str = "standard", **kw):
        super().__init__(**kw)
        if layer not in self.layers:
            raise ValueError(f"{self.name} layer must be one of {self.layers}, got {layer!r}")
        self.layer, self.variant = layer, check_variant(self.name, variant)
        env = f"{self.name.upper()}_CHECKPOINT"
        checkpoint = checkpoint or os.environ.get(env)
        how = (
            f"Download {self.release} from fairseq's wav2vec release "
            f"(github.com/facebookresearch/fairseq, examples/wav2vec) and set "
            f"extractors.{self.name}.checkpoint (or {env}) to it."
        )
        if checkpoint is None or not Path(checkpoint).is_file():
            raise WeightsNotFound(
                f"{self.name}: no checkpoint {'given' if checkpoint is None else 'at ' + checkpoint}. {how}"
            )
        try:
            import fairseq
            import torch
        except ImportError as e:
            raise WeightsNotFound(
                f"{self.name}: fairseq is not installed ({e}); install the `fairseq` extra (requirements-extras.lock)"
            ) from None
        try:
            with _trusted_pickle():
                models, _, _ = fairseq.checkpoint_utils.load_model_ensemble_and_task([checkpoint])
        except Exception as e:
            raise WeightsNotFound(
                f"{self.name}: fairseq could not load {checkpoint} ({type(e).__name__}: {str(e)[:200]}). {how}"
            ) from None
        self.net = self.torch_module(models[0])
        has_vq = getattr(self.net, "vector_quantizer", None) is not None
        if has_vq != self.quantized:
            raise WeightsNotFound(
                f"{self.name}: {checkpoint} is a {'vq-' if has_vq else ''}wav2vec "
                f"checkpoint; use the {'vq_wav2vec' if has_vq else 'wav2vec'} extractor"
            )
        convs = [m for m in self.net.feature_extractor.modules() if isinstance(m, torch.nn.Conv1d)]
        self.field, self.stride = conv_geometry([c.kernel_size[0] for c in convs], [c.stride[0] for c in convs])
        self.checkpoint, self.source = checkpoint, describe_source(checkpoint)

    def describe(self):
        import fairseq
        import torch

        return {
            "extractor": self.name,
            "weights": Path(self.checkpoint).name,
            "weights_source": self.source,
            "weights_sha256": sha256_files(self.checkpoint),
            "layer": self.layer,
            "variant": self.variant,
            "input": f"16 kHz, frames every {self.stride} samples, receptive field {self.field}",
            "versions": {"torch": torch.__version__, "fairseq": fairseq.__version__},
        }

    def _frames(self, wave):
        import torch

        with self.torch_inference():
            h = self.net.feature_extractor(torch.from_numpy(wave).float()[None].to(self.torch_device()))
            if self.quantized and self.layer in ("q", "c"):
                h = self.net.vector_quantizer(h, produce_targets=False)["x"]
            if self.layer == "c":
                h = self.net.feature_aggregator(h)
        return h[0].T.float().cpu().numpy()  # [frames, channels]

    def embed(self, samples):
        return frames_to_rows(self._frames, samples, self.sample_rate, self.variant, self.field, self.stride)


class Wav2Vec(FairseqWav2Vec):
    """wav2vec 1.0 (Schneider et al.) from a fairseq checkpoint: z (encoder) or c (context) frames."""

    name = "wav2vec"
    release = "wav2vec_large.pt"


class VQWav2Vec(FairseqWav2Vec):
    """vq-wav2vec (Baevski et al.) from a fairseq checkpoint (gumbel or k-means): z, quantised q, or c."""

    name = "vq_wav2vec"
    release = "vq-wav2vec.pt (gumbel) or vq-wav2vec_kmeans.pt"
    layers = ("z", "q", "c")
    quantized = True
