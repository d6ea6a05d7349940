"""Are two caches (or dataset files) the same features? Compares every dataset by value and every
attribute, and names what differs; exit 1 when anything other than the ignored keys differs.

    python bench/same_caches.py old/features/audio/musicnn.h5 features/audio/musicnn.h5 \
        --ignore code_sha256 code_files

Byte-level hashes (``dvc.lock``'s md5) change whenever the provenance does: the code's hash is
part of it. This says whether the values a model reads changed. Strings compare decoded, so a
variable-length and a fixed-length UTF-8 string dataset with the same text are equal.
"""

from __future__ import annotations

import argparse
import json
import sys

import h5py
import numpy as np


def _values(ds: h5py.Dataset) -> np.ndarray:
    x = ds[()]
    if isinstance(x, np.ndarray) and x.dtype.kind in "OS":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in x.reshape(-1)], object).reshape(x.shape)
    return x


def _attrs(obj, ignore: set[str]) -> dict:
    out = {}
    for k, v in obj.attrs.items():
        if k in ignore:
            continue
        if k == "provenance":
            v = {pk: pv for pk, pv in json.loads(v).items() if pk not in ignore}
        out[k] = v.decode() if isinstance(v, bytes) else v
    return out


def differences(a_path: str, b_path: str, ignore: set[str]) -> list[str]:
    out = []
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        names = {}
        for f, key in ((a, "a"), (b, "b")):
            f.visititems(lambda n, o, key=key: names.setdefault(n, set()).add(key))
        for name in sorted(names):
            if names[name] != {"a", "b"}:
                out.append(f"{name}: only in {''.join(names[name])}")
                continue
            if isinstance(a[name], h5py.Dataset):
                x, y = _values(a[name]), _values(b[name])
                if x.shape != y.shape or not np.array_equal(x, y):
                    out.append(f"{name}: values differ")
            if _attrs(a[name], ignore) != _attrs(b[name], ignore):
                out.append(f"{name}: attributes differ")
        ra, rb = _attrs(a, ignore), _attrs(b, ignore)
        for k in sorted(set(ra) | set(rb)):
            if ra.get(k) != rb.get(k):
                out.append(f"attribute {k} differs")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--ignore", nargs="*", default=[], help="attribute / provenance keys not compared")
    a = ap.parse_args(argv)
    diff = differences(a.a, a.b, set(a.ignore))
    print("\n".join(diff) if diff else f"same values and attributes (ignoring {a.ignore or 'nothing'})")
    sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
