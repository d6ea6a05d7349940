"""Work folders: what a stage has finished for one exact configuration, kept beside its output
so that a killed run resumes where it stopped.

A work folder is named by a key, a hash of everything its contents depend on. Opening one
removes the folders of other keys under the same name (another configuration's leftovers can
never be resumed); the stage writes its files there atomically (``avcache.contract.io``) and
removes the folder once its output is published. Extraction keeps one file per finished video
(``avcache.extraction.stage.WorkStore``), training one state file per seed.

Also here: the lock a stage holds on its output (``OutputLock``: one run per cache), and the
work folders no run will remove (``stale_work_folders``: reported, with their size).
"""

from __future__ import annotations

import os
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


class OutputBusy(RuntimeError):
    """Another process is writing the same output."""


class OutputLock:
    """An exclusive lock on one output for a whole stage: ``flock`` on ``.<name>.lock`` beside it.

    Two runs writing the same cache (two ``python -m avcache extract``, or a ``dvc repro`` beside
    the orphan of a killed one) would share one work folder and race to publish; the second is
    refused at once, naming the holder. The kernel releases the lock when its holder dies (even
    by ``kill -9``), so a lock file left behind never blocks anyone. The holder removes the file
    when done; a run that locked a file just removed (its inode no longer at the path) tries again.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out.with_name(f".{self.out.name}.lock")
        self.fd: int | None = None

    def __enter__(self):
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputBusy(
                    f"{self.out} is being written by another process (pid {holder}, lock {self.path}); wait for "
                    f"it to finish or stop it (kill {holder}), then re-run"
                ) from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # its holder removed it meanwhile: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before closing: nobody can lock it meanwhile
            os.close(self.fd)  # releases the lock
            self.fd = None
        return False


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def stale_work_folders(features: Path) -> list[tuple[Path, Path, int]]:
    """(work folder, its cache, bytes) of every extraction work folder under ``features`` whose
    cache is published: left by a run that failed (``on_failure: stop``, a crash) before DVC
    restored that cache from its run-cache, so no run of that stage will remove them."""
    found = []
    for work in sorted(Path(features).glob("**/.*.work-*")):
        name = work.name[1:].rsplit(".work-", 1)[0]
        cache = work.parent / f"{name}.h5"
        if work.is_dir() and cache.is_file():
            found.append((work, cache, folder_size(work)))
    return found
