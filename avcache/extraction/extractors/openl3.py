"""OpenL3 (Cramer et al.) through torchopenl3, the PyTorch port of the same networks.

1-s windows at 48 kHz every ``hop`` seconds (centred: window k is centred at k*hop), one
embedding each; per-second features are their mean (the thesis then reduced by PCA to 128).
Weights: ``torchopenl3_<repr>_<content>_<size>.pth.tar`` from torchopenl3's release URL, kept in
``$TORCH_HOME/hub/checkpoints/`` (where ``torch.hub.load_state_dict_from_url`` keeps it; fetched
once if missing); offline, put the file there or set ``extractors.openl3.weights`` to it. Either
way it is read as tensors only (``weights_only``), not through torchopenl3's loader, which
unpickles it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from avcache.contract.io import sha256_files
from avcache.extraction.extractors.base import AudioExtractor, WeightsNotFound, describe_source

CHOICES = {
    "input_repr": ("linear", "mel128", "mel256"),
    "content_type": ("music", "env"),
    "embedding_size": (512, 6144),
}


class OpenL3(AudioExtractor):
    name = "openl3"
    sample_rate = 48000
    resampler = "kaiser_best"  # openl3's own preprocessing (and torchopenl3's default sampler) use resampy

    def __init__(
        self,
        input_repr: str = "mel256",
        content_type: str = "music",
        embedding_size: int = 6144,
        hop: float = 0.1,
        weights: str | None = None,
        batch_size: int = 32,
        **kw,
    ):
        super().__init__(**kw)
        for k, v in (("input_repr", input_repr), ("content_type", content_type), ("embedding_size", embedding_size)):
            if v not in CHOICES[k]:
                raise ValueError(f"openl3 {k} must be one of {CHOICES[k]}, got {v!r}")
        if not 0 < hop <= 1:
            raise ValueError(f"openl3 hop must be in (0, 1] seconds, got {hop}")
        self.input_repr, self.content_type, self.embedding_size = input_repr, content_type, embedding_size
        self.hop, self.batch_size = hop, batch_size
        try:
            import torch
            import torchopenl3
        except ImportError as e:
            raise WeightsNotFound(
                f"openl3: torchopenl3 is not installed ({e}); install the `openl3` extra (requirements-extras.lock)"
            ) from None
        fname = f"torchopenl3_{input_repr}_{content_type}_{embedding_size}.pth.tar"
        if weights is None:  # torchopenl3's own loader would unpickle the file: fetch it, then load it here
            cached = Path(torch.hub.get_dir()) / "checkpoints" / fname
            if not cached.is_file():
                try:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    url = torchopenl3.core.get_model_path(input_repr, content_type, embedding_size)
                    torch.hub.download_url_to_file(url, str(cached), progress=False)
                except Exception as e:
                    raise WeightsNotFound(
                        f"openl3: torchopenl3 could not fetch {fname} ({type(e).__name__}: {str(e)[:120]}). "
                        f"Offline, put the file at {cached} or set extractors.openl3.weights to it."
                    ) from None
            path, self.source = cached, describe_source(fname)
        else:
            if not Path(weights).is_file():
                raise WeightsNotFound(
                    f"openl3: weights file {weights} does not exist; set extractors.openl3.weights to {fname}"
                )
            path, self.source = Path(weights), describe_source(weights)
        self.model = torchopenl3.models.PytorchOpenl3(
            input_repr=input_repr, content_type=content_type, embedding_size=embedding_size
        )
        try:  # tensors only, whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says: a state dict needs no pickle
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            found = re.search(r"GLOBAL (\S+)", str(e))
            raise WeightsNotFound(
                f"openl3: {path}: contains objects other than tensors and plain data"
                f"{f' ({found.group(1)})' if found else ''} and will not be loaded (unpickling it could run code)"
                if "Weights only load failed" in str(e)
                else f"openl3: {path}: cannot be read ({e})"
            ) from None
        except (RuntimeError, EOFError) as e:
            raise WeightsNotFound(f"openl3: {path}: cannot be read, truncated or corrupt ({e})") from None
        try:
            self.model.load_state_dict(state)
        except RuntimeError as e:
            raise WeightsNotFound(
                f"openl3: {path} does not load into the {input_repr}/{content_type}/{embedding_size} network: {e}"
            ) from None
        self.weights = str(path)
        self.model = self.torch_module(self.model)

    def describe(self):
        import torch

        return {
            "extractor": self.name,
            "weights": f"openl3 {self.input_repr}/{self.content_type}/{self.embedding_size}",
            "weights_source": self.source,
            "weights_sha256": sha256_files(self.weights) if Path(self.weights).is_file() else None,
            "layer": f"audio embedding ({self.embedding_size})",
            "input": f"48 kHz, 1-s windows, hop {self.hop} s, centred",
            "versions": {"torch": torch.__version__},
        }

    def embed(self, samples):
        import torch
        import torchopenl3

        # a tensor already on our device: torchopenl3 itself would pick "cuda" whenever it exists
        audio = torch.from_numpy(samples.astype(np.float64)).to(self.torch_device())
        with self.torch_inference():
            emb, _ = torchopenl3.get_audio_embedding(
                audio,
                self.sample_rate,
                model=self.model,
                center=True,
                hop_size=self.hop,
                batch_size=self.batch_size,
                verbose=False,
            )
        emb = emb[0].float().cpu().numpy().astype(np.float32)
        times = np.arange(len(emb)) * self.hop  # centre of window k (center=True pads half a window)
        keep = times < len(samples) / self.sample_rate
        return emb[keep], times[keep]
