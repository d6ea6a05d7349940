"""The HDF5 feature cache: one file per extractor, rows in the dataset file's video order.

Layout of ``features/<modality>/<name>.h5``:

- ``features``      float32 [N, 10, d] (audio) or [N, 10, h, w, c] (visual); time-frequency caches
                    (``logmel``, ``mfcc``; attribute ``layout`` = ``time_frequency``) are
                    [N, S, F, M]: S seconds, F frames per second, M bands (``read_spectrograms``)
- ``video_ids``     [N] strings, identical to the dataset file's
- ``media/*``       [N] per-video decoding facts (real length, offsets, padding, held frames...)
                    and ``media/file``, the name of the file decoded
- ``reduction/*``   fitted state of the reduction (e.g. PCA components, mean), if any
- ``valid``         [N] bool: False where the video failed (its row is zeros); the file's
                    root attribute ``failure_policy`` says how training treats those rows
- attributes        ``provenance`` (JSON: everything that produced the file) plus flat copies of
                    the main fields, ``video_order_sha256`` and ``complete``.

A file is written under a temporary name and renamed into place only once every row is
written (``avcache.contract.io.atomic_path``), so a half-written cache never sits at the output path.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from avcache.contract import h5
from avcache.contract.dataset import Dataset, order_hash
from avcache.contract.io import atomic_path, counted

FLAT_ATTRS = (
    "extractor",
    "modality",
    "layer",
    "weights",
    "weights_sha256",
    "reduction",
    "code_sha256",
    "storage",
    "layout",
    "frames_per_second",
    "sample_rate",
    "hop",
    "bands",
)
TIME_FREQUENCY = "time_frequency"  # the ``layout`` of a cache of spectrogram frames, [N, S, F, M]


def untimed_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A group without HDF5's creation timestamps, so identical content gives identical bytes."""
    if name in parent:
        return parent[name]
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


class CacheError(RuntimeError):
    """A cache is missing, incomplete, or does not belong to the dataset it is read with."""


CHUNK_BYTES = 1 << 20  # rows per HDF5 chunk: about 1 MiB, whole rows (training reads whole rows)
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class Storage:
    """How a cache stores its features (params: ``extractors.<name>.storage``); reading returns
    float32 whatever the storage, so training and evaluation never see the difference."""

    dtype: Literal["float32", "float16"] = "float32"
    compression: Literal["none", "lzf", "gzip"] = "none"  # gzip and lzf with HDF5's byte shuffle
    level: int = 4  # gzip level 1-9

    def check(self, where: str) -> None:
        from avcache.contract.params import ParamsError

        if not 1 <= self.level <= 9:
            raise ParamsError(f"params.yaml: {where}.level must be 1..9, got {self.level}")

    def dataset_options(self, n: int, row_shape: tuple[int, ...]) -> dict:
        row_bytes = int(np.prod(row_shape)) * np.dtype(self.dtype).itemsize
        opts = {"dtype": self.dtype, "chunks": (max(1, min(n, CHUNK_BYTES // max(row_bytes, 1))), *row_shape)}
        if self.compression != "none":
            opts.update(compression=self.compression, shuffle=True)
            if self.compression == "gzip":
                opts["compression_opts"] = self.level
        return opts


class CacheWriter:
    """Write rows one video at a time; publish atomically on a clean exit."""

    def __init__(
        self,
        path: str | Path,
        video_ids: list[str],
        row_shape: tuple[int, ...],
        provenance: dict,
        storage: Storage = Storage(),
    ):
        self.path = Path(path)
        self.storage = storage
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._publish = atomic_path(self.path)
        self.tmp = self._publish.__enter__()
        self.n = len(video_ids)
        self.done = np.zeros(self.n, bool)
        self.f = h5py.File(self.tmp, "w")
        # one handle for every write: a handle freed after each one would flush HDF5's chunk cache
        # in its destructor, where a full disk can only print a traceback, not raise
        self.features = self.f.create_dataset(
            "features", shape=(self.n, *row_shape), fletcher32=True, **storage.dataset_options(self.n, row_shape)
        )
        h5.create(self.f, "video_ids", h5.utf8_strings(video_ids))
        self.media: dict[str, np.ndarray] = {}
        provenance = {**provenance, "storage": asdict(storage)}
        self.f.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
        for k in FLAT_ATTRS:
            if k in provenance:
                self.f.attrs[k] = (
                    json.dumps(provenance[k]) if isinstance(provenance[k], (dict, list)) else str(provenance[k])
                )
        self.f.attrs["video_order_sha256"] = order_hash(video_ids)
        self.f.attrs["complete"] = False

    def write(self, i: int, row: np.ndarray, media: dict[str, float | str] | None = None) -> None:
        """Row ``i`` and what decoding found (numbers, or strings such as the file used)."""
        if self.storage.dtype == "float16" and row.size and np.abs(row).max() > FLOAT16_MAX:
            raise CacheError(
                f"{self.path}: row {i} has values up to {np.abs(row).max():.3g}, beyond "
                f"float16's {FLOAT16_MAX:g}; store this extractor as float32"
            )
        # converted by numpy (round to nearest): HDF5's own float32 -> float16 conversion gets some
        # values wrong (h5py 3.14 stored -0.9999962 as -0.5)
        try:
            self.features[i] = np.asarray(row).astype(self.storage.dtype)
        except (OSError, RuntimeError) as e:
            raise write_error(e, self.tmp) from None
        for k, v in (media or {}).items():
            empty = np.full(self.n, "", object) if isinstance(v, str) else np.zeros(self.n, np.float32)
            self.media.setdefault(k, empty)[i] = v
        self.done[i] = True

    def set_valid(self, valid: np.ndarray, policy: str) -> None:
        h5.create(self.f, "valid", np.asarray(valid, bool))
        self.f.attrs["failure_policy"] = policy

    def save_state(self, group: str, arrays: dict[str, np.ndarray]) -> None:
        if not arrays:
            return
        g = untimed_group(self.f, group)
        for k, v in arrays.items():
            h5.create(g, k, v)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """Publish (flag complete, fsync, rename) on a clean exit; otherwise leave nothing behind."""
        try:
            if exc_type is None:
                if not self.done.all():
                    raise CacheError(f"{self.path}: {counted(int((~self.done).sum()), 'row')} never written")
                media = untimed_group(self.f, "media")
                for k, v in self.media.items():
                    h5.create(media, k, v)
                self.f.attrs["complete"] = True
            self.f.close()
        except BaseException as e:
            self._close_quietly()
            self._publish.__exit__(type(e), e, e.__traceback__)
            if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, CacheError):
                raise write_error(e, self.tmp) from None
            raise
        if exc_type is not None:
            self._close_quietly()
        self._publish.__exit__(exc_type, exc, tb)
        return False

    def _close_quietly(self) -> None:
        """Closing may fail again (a full disk), and so may every HDF5 object freed after it, each
        printing a traceback ("Exception ignored in ObjectID.__dealloc__"); the temporary file is
        dropped either way, so those are silenced here."""
        hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
        try:
            self.f.close()
        except Exception:
            pass
        finally:
            gc.collect()
            sys.unraisablehook = hook


def write_error(e: BaseException, path: Path) -> OSError:
    """HDF5's failed write (a RuntimeError from a close, with the C errno only in its text) as an
    ``OSError`` with that errno and the file, so callers tell a full disk from a bug.

    HDF5 cannot recover from a failed flush: the file stays open inside the library, and freeing
    or closing it again crashes the interpreter at exit; a process that gets this should exit
    at once (``os._exit``, as the extraction stage does)."""
    import re

    if isinstance(e, OSError) and e.errno:
        return OSError(e.errno, os.strerror(e.errno), str(path))
    found = re.search(r"errno = (\d+)", str(e))
    if not found:
        return OSError(0, (str(e).strip().splitlines() or [type(e).__name__])[0][:160], str(path))
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def read_modality(path: str | Path) -> str | None:
    """The cache's ``modality`` attribute (None when it has none: a cache written by hand)."""
    with h5py.File(path, "r") as f:
        m = f.attrs.get("modality")
    return m.decode() if isinstance(m, bytes) else (str(m) if m is not None else None)


def read_provenance(path: str | Path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["provenance"])


def open_cache(path: str | Path, dataset: Dataset) -> h5py.File:
    """Open a cache for reading after checking it is complete and in the dataset's video order."""
    path = Path(path)
    if not path.is_file():
        raise CacheError(f"{path}: cache missing; add the extractor to params.yaml and run `dvc repro`")
    f = h5.open_file(path, CacheError)
    try:
        if not f.attrs.get("complete", False):
            raise CacheError(f"{path}: cache is incomplete (an interrupted write); re-run `dvc repro`")
        ids = [s.decode() if isinstance(s, bytes) else s for s in h5.read(f, "video_ids", path, CacheError)]
        if ids != dataset.video_ids:
            raise CacheError(
                f"{path}: video order differs from the dataset file ({len(ids)} vs "
                f"{counted(len(dataset.video_ids), 'video')}, order sha256 {order_hash(ids)[:12]} vs "
                f"{dataset.order_sha256[:12]}); it was built for another dataset: re-run `dvc repro`"
            )
    except Exception:
        f.close()
        raise
    return f


def read_features(path: str | Path, dataset: Dataset) -> np.ndarray:
    """The whole ``features`` array as float32, whatever the cache stores; a chunk that fails its
    checksum, or a NaN or infinite value, is an error naming the file (and the rows)."""
    with open_cache(path, dataset) as f:
        x = h5.read(f, "features", path, CacheError).astype(np.float32, copy=False)
    bad = non_finite_rows(x)
    if len(bad):
        first = ", ".join(dataset.video_ids[i] for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise CacheError(
            f"{path}: non-finite features (NaN or inf) in {counted(len(bad), 'row')}: {first}; the cache is damaged or "
            "its extractor produced them: re-create it (`dvc repro`) or restore it (`dvc checkout --force`)"
        )
    return x


def non_finite_rows(x: np.ndarray, block_bytes: int = 1 << 26) -> np.ndarray:
    """Indices of the rows of ``x`` holding a NaN or an infinity, checked in blocks of rows
    (a whole-array mask of a 4-GB cache would take another GB)."""
    step, bad = max(1, block_bytes // max(1, x[:1].nbytes)), []
    for i in range(0, len(x), step):
        finite = np.isfinite(x[i : i + step].reshape(min(step, len(x) - i), -1)).all(1)
        bad.extend(i + np.flatnonzero(~finite))
    return np.array(bad, int)


def read_valid(path: str | Path, dataset: Dataset) -> tuple[np.ndarray, str]:
    """Which rows hold real features, and the cache's failure policy (all valid for old caches)."""
    with open_cache(path, dataset) as f:
        if "valid" not in f:
            return np.ones(len(dataset.video_ids), bool), "mask"
        return h5.read(f, "valid", path, CacheError), str(f.attrs.get("failure_policy", "mask"))


def layout(path: str | Path) -> str:
    """``time_frequency`` for a spectrogram cache; ``per_second`` for every other cache."""
    with h5py.File(path, "r") as f:
        return str(f.attrs.get("layout", "per_second"))


def read_per_second(path: str | Path, dataset: Dataset) -> np.ndarray:
    """The features with one vector (or region grid) per second: a time-frequency cache's frames
    are averaged over each second ([N, S, F, M] -> [N, S, M]); other caches are read as they are.
    How the AVE models and the clip heads read any cache."""
    x = read_features(path, dataset)
    return x.mean(2) if layout(path) == TIME_FREQUENCY else x


def read_spectrograms(path: str | Path, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, int]:
    """(frames float32 [N, S*F, M], valid frames int64 [N], frames per second F) of a time-frequency
    cache. Frame j of a clip is centred at j / F s; it is valid while that centre lies before the
    end of the clip's audio (``media/start_seconds + media/source_seconds``, at most S s), so
    ``valid_frames = min(S*F, ceil(end * F))``; past it the rows are the padding's spectrogram.
    A failed clip (``read_valid`` False: a zero row) has 0 valid frames."""
    path = Path(path)
    x = read_features(path, dataset)
    if layout(path) != TIME_FREQUENCY:
        raise CacheError(
            f"{path}: not a spectrogram cache (layout {layout(path)!r}); extract with `logmel` or `mfcc` "
            "(features/audio/<name>.h5) or read it with read_features"
        )
    n, s, fps, m = x.shape
    with open_cache(path, dataset) as f:
        start = h5.read(f, "media/start_seconds", path, CacheError).astype(np.float64)
        length = h5.read(f, "media/source_seconds", path, CacheError).astype(np.float64)
        if int(f.attrs["frames_per_second"]) != fps:
            raise CacheError(f"{path}: frames_per_second attribute {f.attrs['frames_per_second']} != {fps} frames")
    valid_frames = np.minimum(s * fps, np.ceil(np.round((start + length) * fps, 6))).astype(np.int64)
    valid_frames[~read_valid(path, dataset)[0]] = 0
    return x.reshape(n, s * fps, m), valid_frames, fps
