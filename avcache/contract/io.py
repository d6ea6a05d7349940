"""Atomic writes (a reader sees the old file or the complete new one, never a partial write) and file digests."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path):
    """Yield ``<path>.tmp`` to write; on success flush it to disk and rename it over ``path``.

    On any error (a full disk, a kill between steps is covered by the rename) the temporary file
    is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)  # make the rename itself durable
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write) -> None:
    """``write(binary_file)`` into ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def hash_file(h, path: str | Path):
    """``h`` (a hashlib object) updated with the bytes of ``path``, read in 1-MiB blocks."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h


def sha256_files(*paths: str | Path, root: str | Path | None = None) -> str:
    """sha256 of the files' bytes, one after the other in the order given. With ``root``, each
    file's bytes are preceded by its path relative to ``root`` (POSIX) and a NUL byte, so a
    renamed file changes the digest too (a folder of files, e.g. a SavedModel)."""
    h = hashlib.sha256()
    for p in paths:
        if root is not None:
            h.update(Path(p).relative_to(root).as_posix().encode() + b"\0")
        hash_file(h, p)
    return h.hexdigest()


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun`` in agreement, for messages: ``1 video``, ``3 videos``, ``0 videos``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
