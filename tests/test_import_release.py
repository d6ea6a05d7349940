import h5py
import numpy as np
import pytest

from avcache.contract.cache import read_features, read_provenance
from avcache.contract.dataset import AveDataset, write_dataset
from avcache.extraction import stage as run
from avcache.extraction.importers import ReleaseError, import_release


def _dataset(n=8, videos=""):
    rng = np.random.default_rng(0)
    labels = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, (n, 10))]
    split = np.array([0, 0, 0, 0, 1, 1, 2, 2], np.int8)
    return AveDataset([f"v{i}" for i in range(n)], ["a", "b"], labels, split, videos=videos)


def _release(folder, ds, labels=None, train=None):
    folder.mkdir()
    rng = np.random.default_rng(1)
    audio = rng.normal(size=(len(ds.video_ids), 10, 128)).astype(np.float32)
    visual = rng.normal(size=(len(ds.video_ids), 10, 7, 7, 512)).astype(np.float32)
    for name, x in (
        ("audio_feature.h5", audio),
        ("visual_feature.h5", visual),
        ("labels.h5", ds.labels if labels is None else labels),
    ):
        with h5py.File(folder / name, "w") as f:
            f.create_dataset("avadataset", data=x)
    orders = {"train": [3, 0, 2, 1] if train is None else train, "val": [5, 4], "test": [7, 6]}
    for s, order in orders.items():
        with h5py.File(folder / f"{s}_order.h5", "w") as f:
            f.create_dataset("order", data=np.array(order, np.int64))
    return audio, visual


def test_the_release_is_a_pair_of_registered_caches(tmp_path, monkeypatch):
    """`-S audio=vggish_release -S visual=vgg19_release`: the extraction stages import, row for row."""
    ds = _dataset(videos=str(tmp_path / "rel"))  # dataset.videos names the release folder
    audio, visual = _release(tmp_path / "rel", ds)
    write_dataset(ds, tmp_path / "dataset.h5")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("extractors: {vggish_release: {}, vgg19_release: {}}\n")
    for modality, name, expect in (("audio", "vggish_release", audio), ("visual", "vgg19_release", visual)):
        out = tmp_path / "features" / modality / f"{name}.h5"
        run.main([modality, name, "--dataset", "dataset.h5", "--out", str(out)])
        assert np.array_equal(read_features(out, ds), expect)
    assert read_provenance(out)["layer"].startswith("VGG-19 pool5")


def test_import_refuses_disagreeing_labels_or_splits(tmp_path):
    ds = _dataset()
    wrong = ds.labels.copy()
    wrong[2] = np.roll(wrong[2], 1, axis=-1)
    _release(tmp_path / "a", ds, labels=wrong)
    with pytest.raises(ReleaseError, match=r"1 row disagrees with the dataset file \(first: row 2, video v2\)"):
        import_release(tmp_path / "a", ds, "audio", tmp_path / "features/a.h5")
    _release(tmp_path / "b", ds, train=[0, 1, 2, 4])
    with pytest.raises(ReleaseError, match="train_order.h5: its 4 rows are not the 4 train rows"):
        import_release(tmp_path / "b", ds, "visual", tmp_path / "features/v.h5")
    assert not (tmp_path / "features").exists()
