"""What the extractors for any model of a common interface (``hear``, ``torch_module``) share:
importing the user's module, its version, and the one rule about weights (a file, or an explicit
statement that the module loads its own; never random weights by omission)."""

from __future__ import annotations

import importlib
from pathlib import Path

from avcache.contract.io import sha256_files
from avcache.extraction.extractors.base import WeightsNotFound


def import_module(name: str, module: str, key: str):
    """The module ``module`` (``key`` is the params.yaml option that named it)."""
    if not isinstance(module, str) or not module:
        raise ValueError(f"{name}: set extractors.{name}.{key} to the import name of an installed module")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise WeightsNotFound(
            f"{name}: extractors.{name}.{key} {module!r} does not import ({e}); install its package "
            "in this environment (.venv/bin/pip install ...)"
        ) from None


def module_version(module: str) -> str | None:
    """The installed distribution's version for an import name (None for a module not installed
    from a distribution, e.g. one on PYTHONPATH, unless it sets ``__version__``)."""
    from importlib.metadata import packages_distributions, version

    top = module.split(".")[0]
    for dist in packages_distributions().get(top, []):
        return f"{dist}=={version(dist)}"
    found = getattr(importlib.import_module(top), "__version__", None)
    return str(found) if found is not None else None


def weights_file(name: str, path: str | None, key: str, module_loads: bool, flag: str) -> str | None:
    """The weights file to load, or None where the user said the module loads its own."""
    if path is None:
        if module_loads:
            return None
        raise WeightsNotFound(
            f"{name}: set extractors.{name}.{key} to the weights file; a network without it would "
            f"run on random weights. If the module loads pretrained weights itself, set {flag}: true"
        )
    if not Path(path).exists():
        raise WeightsNotFound(f"{name}: extractors.{name}.{key} {path} does not exist")
    return str(path)


def weights_provenance(path: str | None, who: str) -> dict:
    """The weights file (or folder: every file in it, with its relative path) and its sha256."""
    if not path:
        return {"weights": f"loaded by {who} itself", "weights_sha256": None}
    folder = Path(path)
    if folder.is_dir():
        digest = sha256_files(*(p for p in sorted(folder.rglob("*")) if p.is_file()), root=folder)
    else:
        digest = sha256_files(path)
    return {"weights": path, "weights_sha256": digest}
