"""HDF5 storage shared by the dataset file and the caches: checksummed datasets, and reads that
turn a damaged file into one line naming it and saying what to do.

Every dataset is written with HDF5's Fletcher-32 filter (``fletcher32=True``): a checksum per
chunk, verified by HDF5 on every read, so a byte flipped on a disk, in a transfer or in a DVC
remote fails the read instead of silently changing features. The filter needs chunked storage,
which h5py picks when it is set; strings are stored as fixed-length UTF-8, since HDF5 cannot
filter variable-length strings. A scalar dataset cannot be chunked: it is stored without one
(the writers create none).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

RESTORE = (
    "restore it with `dvc checkout --force {path}`, or delete it and re-create it "
    "(`dvc repro`, or `make pull` for the lab's copy)"
)


def utf8_strings(values) -> np.ndarray:
    """``values`` as fixed-length UTF-8 strings (what ``[()]`` reads back as bytes, as before)."""
    encoded = [str(v).encode() for v in values]
    return np.array(encoded, dtype=h5py.string_dtype("utf-8", max(map(len, encoded), default=0) or 1))


def create(parent: h5py.Group, name: str, data, **options) -> h5py.Dataset:
    """``parent.create_dataset(name, data=data)`` with a checksum per chunk (strings as fixed-length UTF-8)."""
    data = np.asarray(data)
    if data.dtype == object or data.dtype.kind == "U":
        data = utf8_strings(data.reshape(-1)).reshape(data.shape)
    return parent.create_dataset(name, data=data, fletcher32=data.ndim > 0, **options)


def _why(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def open_file(path: str | Path, error: type[Exception]) -> h5py.File:
    """The file open for reading, or ``error`` naming it when HDF5 cannot open it."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise error(
            f"{path}: cannot be opened, it is truncated or not an HDF5 file ({_why(e)}); {RESTORE.format(path=path)}"
        ) from None


def _first_damaged(f: h5py.File) -> str | None:
    """The first dataset of ``f`` that fails to read, chunk by chunk (so a large cache is not
    loaded at once); None when every one reads."""
    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    for name in names:
        ds = f[name]
        try:
            if ds.chunks is None:
                ds[()]
            else:
                for part in ds.iter_chunks():
                    ds[part]
        except OSError:
            return name
    return None


def corrupted(path: str | Path, e: OSError, f: h5py.File | None = None, name: str | None = None) -> str:
    """One line: the file, what is damaged, what to do."""
    if name is None and f is not None:
        try:
            name = _first_damaged(f)
        except Exception:
            name = None
    where = f" in '{name}'" if name else ""
    what = "checksum mismatch" if "filter returned failure" in str(e) else f"unreadable data: {_why(e)}"
    return f"{path}: corrupted ({what}{where}); {RESTORE.format(path=path)}"


def read(f: h5py.File, name: str, path: str | Path, error: type[Exception]) -> np.ndarray:
    """``f[name][()]``, or ``error`` naming the file when a chunk fails its checksum."""
    try:
        return f[name][()]
    except OSError as e:
        raise error(corrupted(path, e, name=name)) from None


@contextmanager
def reading(path: str | Path, error: type[Exception]):
    """``h5py.File(path, "r")`` whose damaged reads (checksum mismatch, unreadable data) raise
    ``error`` naming the file and the dataset."""
    f = open_file(path, error)
    try:
        yield f
    except OSError as e:
        raise error(corrupted(path, e, f)) from None
    finally:
        f.close()
