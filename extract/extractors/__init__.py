"""The extractor registry: a name in params.yaml -> the class that builds it.

Adding an extractor is one module in this folder, named like its registry key (dvc.yaml tracks
``extract/extractors/<name>.py`` as the stage's code), plus one line below.
"""
from __future__ import annotations

import importlib
import inspect

from extract.extractors.base import Extractor, WeightsNotFound  # noqa: F401

REGISTRY = {
    "musicnn": "extract.extractors.musicnn:Musicnn",
    "efficientnet": "extract.extractors.efficientnet:EfficientNet",
}


def get(name: str) -> type[Extractor]:
    if name not in REGISTRY:
        raise KeyError(f"unknown extractor {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, options: dict) -> Extractor:
    """Build an extractor from its params.yaml options (``reduction`` is not the extractor's)."""
    cls = get(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(f"extractors.{name}: unknown option(s) {sorted(unknown)}; "
                         f"accepted: {sorted(accepted)}")
    return cls(**options)
