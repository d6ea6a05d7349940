"""How videos become rows: decoding and inference of the videos the stage still needs.

Both engines hand ``avcache.extraction.stage`` one result per video, in dataset order, and never write
anything themselves: the stage owns the work store, the failure policy and the report, so
resume and publication are the same whatever computed the rows.

- ``local``, ``decode_workers: 0``: the serial engine, one video decoded then embedded at a time.
- ``local``, ``decode_workers: N``: N worker processes (``spawn``: they start clean, without the
  parent's TensorFlow / PyTorch threads, and import only ``avcache.media``) decode up to 2N
  videos ahead while the main process runs the model on the videos already decoded.
- ``ray``: actors on a Ray cluster (``avcache/extraction/engine_ray.py``).

The model sees each video's frames in the same batches whatever the engine (``batch_size``
frames of one video per forward pass), so every engine gives the serial engine's bytes.
Frames of several videos are not batched together: on the CPU a frame's features depend on
the batch around it (EfficientNet-Lite0, oneDNN: batches of 1, 3 or 5 frames differ from
batches of 8 or 32 by up to 2e-5), and on GPUs cuDNN picks algorithms by batch shape.

A result is a ``Row`` (per-second features, what decoding did, notes), a ``Failed`` for a video
that cannot be decoded (``MediaError``: recorded, the others go on), or an ``Error`` for anything
else, which stops the stage naming the video. They are dataclasses: they cross process
boundaries (decode workers, Ray) by pickling, and the stage tells them apart by type.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avcache.contract.dataset import SEGMENTS
from avcache.extraction.reduce import Reduction, pool_seconds
from avcache.media import MediaError


@dataclass
class Row:
    """A computed video: per-second features [seconds, ...], what decoding did (numbers, for the
    cache) and notes for people (for the report)."""

    values: np.ndarray
    facts: dict
    notes: list[str]


@dataclass
class Failed:
    """A video that cannot be decoded or found (``MediaError``): recorded, the others go on."""

    reason: str


@dataclass
class Error:
    """Anything else (the model crashed, a worker died): the stage stops naming the video."""

    what: str
    traceback: str = ""


@dataclass
class Decoded:
    """A decode worker's clip (``media.Audio`` / ``media.Frames``), ready for the model."""

    clip: object


Result = Row | Failed | Error


@dataclass
class Task:
    """One video to compute: its row in the dataset and the file it resolved to (or why not)."""

    index: int
    video: str
    path: Path | None
    missing: str | None = None  # the lookup's MediaError message
    seconds: int = SEGMENTS  # decoded and pooled (the dataset's longest clip; shorter ones are padded)


SILENT = "silent_peak"  # in a Row's facts only for a silent clip; the stage reports it, the cache never holds it


def finish(extractor, reduction: Reduction, decoded, seconds: int = SEGMENTS) -> Row:
    """Model, per-video reduction and per-second pooling of one decoded clip."""
    values, times = extractor(decoded)
    if reduction.per_video:
        values = reduction(values)
    facts = {**decoded.facts(), "file": Path(decoded.file).name}  # the name only: no machine paths
    if getattr(decoded, "silent", False):
        facts[SILENT] = decoded.peak
    return Row(pool_seconds(values, times, seconds), facts, decoded.notes())


def guarded(fn, *args):
    """``fn(*args)``, or the result it failed with: a MediaError fails the video, anything else
    is an error."""
    try:
        return fn(*args)
    except MediaError as e:
        return Failed(str(e))
    except Exception as e:
        return Error(f"{type(e).__name__}: {e}", traceback.format_exc())


def decode(decoder, path, seconds: int = SEGMENTS) -> Decoded | Failed | Error:
    """Run in a decode worker: the decoded clip, or why not."""
    return guarded(lambda: Decoded(decoder(path, duration=seconds)))


def compute(extractor, reduction, task: Task, decoder=None) -> Result:
    """One video, decoded here: the serial engine's step (and a Ray actor's without workers)."""
    if task.missing:
        return Failed(task.missing)
    decoded = decode(decoder or extractor.decoder(), task.path, task.seconds)
    return after_decode(extractor, reduction, decoded, task.seconds)


def after_decode(extractor, reduction, decoded: Decoded | Failed | Error, seconds: int = SEGMENTS) -> Result:
    if not isinstance(decoded, Decoded):
        return decoded
    return guarded(finish, extractor, reduction, decoded.clip, seconds)


def _watch_parent(parent: int) -> None:
    """Decode workers exit when the process that started them is gone (even after kill -9)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the stage, which shuts us down

    def watch():
        while os.getppid() == parent:
            threading.Event().wait(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def decode_workers(setting: int | str) -> int:
    """``auto``: one process per core the model does not need, 1 to 16 (a GPU server's cores all
    decode; on 2 cores one decodes while the model's threads run)."""
    if setting != "auto":
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, cores - 1))


def decode_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes for decoding; they never import TensorFlow or PyTorch."""
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_watch_parent, initargs=(os.getpid(),)
    )


def worker_modules() -> list[str]:
    """The heavy frameworks a decode worker has imported (a check for tests: none)."""
    return sorted(m for m in ("torch", "tensorflow", "keras", "jax") if m in sys.modules)


def run_local(
    extractor, reduction: Reduction, tasks: list[Task], decode_workers: int = 0
) -> Iterator[tuple[Task, Result]]:
    """(task, result) for every task, in order; decoding runs ``decode_workers`` processes ahead."""
    if decode_workers <= 0:
        decoder = extractor.decoder()
        for task in tasks:
            yield task, compute(extractor, reduction, task, decoder)
        return
    decoder = extractor.decoder()
    pool = decode_pool(decode_workers)
    ahead = 2 * decode_workers
    window: deque = deque()
    todo = iter(tasks)
    try:
        while True:
            while len(window) < ahead and (task := next(todo, None)) is not None:
                future = None if task.missing else pool.submit(decode, decoder, task.path, task.seconds)
                window.append((task, future))
            if not window:
                return
            task, future = window.popleft()
            if future is None:
                yield task, Failed(task.missing)
                continue
            try:
                decoded = future.result()
            except BrokenProcessPool:
                decoded = Error(
                    "a decode worker process died (killed, out of memory, or a crash in "
                    "FFmpeg) while this video was being decoded; set extract.decode_workers: 0 to "
                    "decode in the stage's own process"
                )
            yield task, after_decode(extractor, reduction, decoded, task.seconds)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
