"""params.yaml access and the fixed output paths that dvc.yaml declares."""
from __future__ import annotations

from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")
FEATURES = Path("features")
DATASET_FILE = FEATURES / "dataset.h5"


def load(path: str | Path = PARAMS_FILE) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def cache_path(modality: str, name: str) -> Path:
    return FEATURES / modality / f"{name}.h5"
