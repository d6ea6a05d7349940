"""Any audio model that follows the HEAR 2021 interface (Turian et al. 2022), named in params.yaml.

A HEAR module has ``load_model(model_file_path)``, ``get_timestamp_embeddings(audio, model)`` and
``get_scene_embeddings(audio, model)``; the model it returns has ``sample_rate``,
``timestamp_embedding_size`` and ``scene_embedding_size``. Audio goes in as a float32 torch tensor
[n_sounds, n_samples] at the model's rate; timestamps come back in milliseconds.

- ``layer: timestamp``: the whole clip in one call; each embedding is stamped with its timestamp,
  so ``pool_seconds`` averages the ones whose timestamp falls in second s.
- ``layer: scene``: one scene embedding per 1-s segment of the clip (a shorter last segment alone).
"""

from __future__ import annotations

import numpy as np

from avcache.extraction.extractors import common
from avcache.extraction.extractors.base import AudioExtractor, WeightsNotFound

FUNCTIONS = ("load_model", "get_timestamp_embeddings", "get_scene_embeddings")
ATTRIBUTES = ("sample_rate", "timestamp_embedding_size", "scene_embedding_size")
LAYERS = ("timestamp", "scene")


class HEAR(AudioExtractor):
    """The module is imported and checked, and its model loaded, before any audio is decoded."""

    name = "hear"

    def __init__(
        self,
        module: str | None = None,
        model_file: str | None = None,
        module_loads_weights: bool = False,
        layer: str = "timestamp",
        **kw,
    ):
        super().__init__(**kw)
        if layer not in LAYERS:
            raise ValueError(f"hear: layer must be one of {LAYERS}, got {layer!r}")
        self.module_name, self.layer = module, layer
        self.module = common.import_module(self.name, module, "module")
        missing = [f for f in FUNCTIONS if not callable(getattr(self.module, f, None))]
        if missing:
            raise ValueError(f"hear: module {module!r} lacks {missing} of the HEAR interface {list(FUNCTIONS)}")
        self.model_file = common.weights_file(
            self.name, model_file, "model_file", module_loads_weights, "module_loads_weights"
        )
        try:
            model = self.module.load_model(self.model_file) if self.model_file else self.module.load_model()
        except Exception as e:  # the module's own loader: any failure is the weights' or the module's
            raise WeightsNotFound(
                f"hear: {module}.load_model({self.model_file or ''!r}) failed ({type(e).__name__}: {str(e)[:200]})"
            ) from None
        missing = [a for a in ATTRIBUTES if not hasattr(model, a)]
        if missing:
            raise ValueError(f"hear: the model {module}.load_model returned has no {missing} (HEAR: {ATTRIBUTES})")
        self.sample_rate = int(model.sample_rate)
        self.size = int(model.timestamp_embedding_size if layer == "timestamp" else model.scene_embedding_size)
        self.model = self.torch_module(model) if _is_torch_module(model) else model
        if self.device is None:  # a model that is not a torch module stays where its module put it
            self.device = "cpu"

    def describe(self):
        import torch

        return {
            "extractor": self.name,
            "module": self.module_name,
            "module_version": common.module_version(self.module_name),
            **common.weights_provenance(self.model_file, self.module_name),
            "layer": f"{self.layer} embeddings ({self.size})",
            "input": f"{self.sample_rate} Hz mono",
            "pooling": "timestamps (ms) pooled to the second they fall in"
            if self.layer == "timestamp"
            else "one scene embedding per 1-s segment",
            "versions": {"torch": torch.__version__},
        }

    def _audio(self, batch: np.ndarray):
        import torch

        device = self.torch_device() if _is_torch_module(self.model) else "cpu"
        return torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(device)

    def _run(self, fn, batch: np.ndarray):
        import torch

        with torch.inference_mode():
            return fn(self._audio(batch), self.model)

    def embed(self, samples):
        seconds = len(samples) / self.sample_rate
        if self.layer == "timestamp":
            emb, ts = self._run(self.module.get_timestamp_embeddings, samples[None])
            values, times = _numpy(emb)[0], _numpy(ts)[0] / 1000.0
            keep = (times >= 0) & (times < seconds)
            values, times = values[keep], times[keep]
        else:
            sr, whole = self.sample_rate, int(seconds)
            parts = []
            if whole:
                parts.append(
                    _numpy(self._run(self.module.get_scene_embeddings, samples[: whole * sr].reshape(whole, sr)))
                )
            if len(samples) > whole * sr:
                parts.append(_numpy(self._run(self.module.get_scene_embeddings, samples[None, whole * sr :])))
            values = np.concatenate(parts)
            times = np.minimum(np.arange(len(values)) + 0.5, (whole + seconds) / 2)
        if values.ndim != 2 or values.shape[1] != self.size:
            raise ValueError(
                f"hear: {self.module_name} returned {self.layer} embeddings of shape {values.shape}, "
                f"but its model says {self.layer}_embedding_size {self.size}"
            )
        return values.astype(np.float32), times


def _is_torch_module(model) -> bool:
    import torch

    return isinstance(model, torch.nn.Module)


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, np.float32)
