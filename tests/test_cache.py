import h5py
import numpy as np
import pytest

from avcache.contract.cache import CacheError, CacheWriter, open_cache, read_features, read_provenance
from avcache.contract.dataset import AveDataset


def _ds(ids):
    return AveDataset(list(ids), ["a"], np.zeros((len(ids), 10, 2), np.uint8), np.zeros(len(ids), np.int8))


def _write(path, ids, rows, prov=None):
    with CacheWriter(path, ids, rows.shape[1:], prov or {"extractor": "x", "layer": "l"}) as w:
        for i, r in enumerate(rows):
            w.write(i, r, {"source_seconds": 10.0 - i})
        w.save_state("reduction", {"mean": np.ones(3)})


def test_round_trip_with_provenance_and_state(tmp_path):
    rows = np.random.default_rng(0).normal(size=(3, 10, 7, 7, 3)).astype(np.float32)
    _write(
        tmp_path / "c.h5", ["v1", "v2", "v3"], rows, {"extractor": "x", "layer": "l", "reduction": {"method": "pca"}}
    )
    assert np.array_equal(read_features(tmp_path / "c.h5", _ds(["v1", "v2", "v3"])), rows)
    assert read_provenance(tmp_path / "c.h5")["reduction"] == {"method": "pca"}
    with h5py.File(tmp_path / "c.h5") as f:
        assert f.attrs["extractor"] == "x" and f.attrs["complete"]
        assert f["media/source_seconds"][()].tolist() == [10, 9, 8]
        assert f["reduction/mean"][()].tolist() == [1, 1, 1]


def test_reader_refuses_other_video_order(tmp_path):
    _write(tmp_path / "c.h5", ["v1", "v2"], np.zeros((2, 10, 4), np.float32))
    with pytest.raises(CacheError, match="video order differs from the dataset file"):
        read_features(tmp_path / "c.h5", _ds(["v2", "v1"]))
    with pytest.raises(CacheError, match="cache missing"):
        read_features(tmp_path / "none.h5", _ds(["v1", "v2"]))


def test_failed_write_leaves_nothing_at_the_output_path(tmp_path):
    path = tmp_path / "c.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with CacheWriter(path, ["v1", "v2"], (10, 4), {}) as w:
            w.write(0, np.ones((10, 4)))
            raise RuntimeError("boom")
    assert not path.exists() and not list(tmp_path.iterdir())
    with pytest.raises(CacheError, match="1 row never written"):
        with CacheWriter(path, ["v1", "v2"], (10, 4), {}) as w:
            w.write(0, np.ones((10, 4)))
    assert not path.exists()


def test_reader_refuses_incomplete_file(tmp_path):
    path = tmp_path / "c.h5"
    _write(path, ["v1"], np.zeros((1, 10, 4), np.float32))
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(CacheError, match="incomplete"):
        open_cache(path, _ds(["v1"]))


def test_same_content_gives_identical_bytes(tmp_path):
    """No HDF5 timestamps: DVC sees an unchanged cache when the features are unchanged."""
    import time

    rows = np.arange(2 * 10 * 4, dtype=np.float32).reshape(2, 10, 4)
    _write(tmp_path / "a.h5", ["v1", "v2"], rows)
    time.sleep(1.1)
    _write(tmp_path / "b.h5", ["v1", "v2"], rows)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


@pytest.mark.parametrize(
    "dtype, compression", [("float16", "none"), ("float32", "gzip"), ("float32", "lzf"), ("float16", "gzip")]
)
def test_compact_storage_reads_back_float32_and_is_smaller(tmp_path, dtype, compression):
    from avcache.contract.cache import Storage

    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(40, 10, 4, 4, 16)) * rng.random((1, 1, 1, 1, 16))).astype(np.float32)
    rows[:, :, :, :, 8:] = 0.25  # a constant channel compresses; random ones hardly do
    ids = [f"v{i}" for i in range(40)]
    _write(tmp_path / "plain.h5", ids, rows)
    with CacheWriter(
        tmp_path / "c.h5", ids, rows.shape[1:], {"extractor": "x"}, Storage(dtype=dtype, compression=compression)
    ) as w:
        for i, r in enumerate(rows):
            w.write(i, r)
    back = read_features(tmp_path / "c.h5", _ds(ids))
    assert back.dtype == np.float32 and back.shape == rows.shape
    if dtype == "float32":
        assert np.array_equal(back, rows)  # compression is lossless
    else:
        assert np.allclose(back, rows, rtol=1e-3, atol=1e-4) and not np.array_equal(back, rows)
    assert (tmp_path / "c.h5").stat().st_size < 0.75 * (tmp_path / "plain.h5").stat().st_size
    assert read_provenance(tmp_path / "c.h5")["storage"] == {"dtype": dtype, "compression": compression, "level": 4}
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["features"].dtype == np.dtype(dtype) and f["features"].chunks[1:] == rows.shape[1:]


def test_float16_refuses_values_it_cannot_hold(tmp_path):
    from avcache.contract.cache import Storage

    rows = np.ones((2, 10, 3), np.float32)
    rows[1, 4, 2] = 1e5
    with pytest.raises(CacheError, match=r"row 1 has values up to 1e\+05, beyond float16's 65504; store"):
        with CacheWriter(tmp_path / "c.h5", ["a", "b"], rows.shape[1:], {}, Storage(dtype="float16")) as w:
            for i, r in enumerate(rows):
                w.write(i, r)
    assert not list(tmp_path.iterdir())


def test_float16_is_rounded_to_nearest_not_by_hdf5(tmp_path):
    """HDF5's float32 -> float16 conversion turns some values near a power of two into half of them."""
    from avcache.contract.cache import Storage

    x = np.random.default_rng(0).normal(size=(1, 10, 6400)).astype(np.float32)
    with CacheWriter(tmp_path / "c.h5", ["a"], x.shape[1:], {}, Storage(dtype="float16")) as w:
        w.write(0, x[0])
    assert np.array_equal(read_features(tmp_path / "c.h5", _ds(["a"])), x.astype(np.float16).astype(np.float32))
