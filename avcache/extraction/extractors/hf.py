"""Loading transformers models (wav2vec 2.0, MaskFormer) from a model id or a local folder."""

from __future__ import annotations

from pathlib import Path

from avcache.contract.io import sha256_files
from avcache.extraction.extractors.base import WeightsNotFound


def load(name: str, model_id: str, model_cls, processor_cls):
    """(model in eval mode, its processor); offline failures say how to provide the folder."""
    try:
        return model_cls.from_pretrained(model_id).eval(), processor_cls.from_pretrained(model_id)
    except OSError as e:
        raise WeightsNotFound(
            f"{name}: could not load {model_id!r} with transformers ({str(e)[:200]}). Offline, "
            f"download the model folder once (`hf download <model id> --local-dir DIR` on a connected "
            f"machine) and set extractors.{name}.model to DIR."
        ) from None


def describe(model_id: str) -> dict:
    """Weights hash (for a local folder) and library versions, for the cache's provenance."""
    import torch
    import transformers

    folder = Path(model_id)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) if folder.is_dir() else []
    return {
        "weights": model_id,
        "weights_sha256": sha256_files(*files) if files else None,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
