"""Work folders: what a stage has finished for one exact configuration, kept beside its output
so that a killed run resumes where it stopped.

A work folder is named by a key, a hash of everything its contents depend on. Opening one
removes the folders of other keys under the same name (another configuration's leftovers can
never be resumed); the stage writes its files there atomically (``avcache.contract.io``) and
removes the folder once its output is published. Extraction keeps one file per finished video
(``avcache.extraction.stage.WorkStore``), training one state file per seed.
"""

from __future__ import annotations

import shutil
from pathlib import Path


class WorkDir:
    """The folder ``parent/<prefix><key>``; other ``parent/<prefix>*`` folders are removed."""

    def __init__(self, parent: Path, prefix: str, key: str):
        self.dir = Path(parent) / f"{prefix}{key}"
        for stale in Path(parent).glob(f"{prefix}*"):
            if stale != self.dir:  # another configuration's leftovers can never be resumed
                shutil.rmtree(stale, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
