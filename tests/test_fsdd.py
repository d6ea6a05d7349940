"""The Free Spoken Digit Dataset read in its own layout (``dataset.format: fsdd``)."""

import numpy as np
import pytest
from helpers import FSDD, fsdd_subset

from avcache.classification.heads import plan_folds
from avcache.contract.dataset import DatasetError
from avcache.datasets.clips import load_clips


def test_fsdd_subset_labels_official_split_and_lengths(tmp_path):
    ds = load_clips(fsdd_subset(tmp_path / "fsdd"), "fsdd")
    row = {p.split("/")[1][:-4]: i for i, p in enumerate(ds.paths)}
    assert ds.class_names == ["0", "1", "3", "5", "7", "9"]  # the digits present, in order
    assert [ds.class_names[ds.labels[row[n]].argmax()] for n in ("9_theo_16", "0_george_0")] == ["9", "0"]
    # takes 0-4 are the official test set (fold 1), the others train only (fold 0)
    assert {n: int(ds.folds[i]) for n, i in row.items()} == {
        "0_george_0": 1, "9_lucas_3": 1, "1_nicolas_2": 1,
        "3_theo_12": 0, "7_yweweler_45": 0, "9_theo_16": 0, "5_jackson_30": 0,
    }  # fmt: skip
    assert ds.seconds[row["9_theo_16"]] == 3 and ds.seconds[row["0_george_0"]] == 1  # 2.28 s and 0.30 s
    assert ds.groups[row["3_theo_12"]] == "3_theo_12"  # each recording is its own source
    (fold,) = plan_folds(ds)
    assert sorted(ds.paths[i] for i in fold.test) == sorted(p for p in ds.paths if int(p.split("_")[-1][:-4]) < 5)


def test_fsdd_refuses_a_stray_wav_naming_it(tmp_path):
    root = fsdd_subset(tmp_path / "fsdd", ["0_george_0"])
    (root / "recordings" / "notes.txt").write_text("ignored: not a .wav")
    (root / "recordings" / "george-0.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"george-0\.wav: name is not \{digit\}_\{speaker\}_\{take\}\.wav"):
        load_clips(root, "fsdd")
    with pytest.raises(DatasetError, match="holding recordings/"):
        load_clips(tmp_path / "nowhere", "fsdd")


def test_fsdd_real_folder_counts():
    ds = load_clips(FSDD, "fsdd")
    assert len(ds.video_ids) == 3000 and int((ds.folds == 1).sum()) == 300  # 10 digits x 6 speakers x takes 0-4
    assert ds.class_names == [str(d) for d in range(10)] and (ds.labels.sum(0) == 300).all()
    assert len({p.split("_")[1] for p in ds.paths}) == 6
    assert ds.max_seconds == 3 and np.bincount(ds.seconds).tolist() == [0, 2986, 12, 2]
    (fold,) = plan_folds(ds)
    assert (len(fold.train), len(fold.val), len(fold.test)) == (2431, 269, 300)
