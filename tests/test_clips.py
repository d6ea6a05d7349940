"""Clip datasets read in their published layouts: classes, folds, sources, lengths, errors."""

import numpy as np
import pytest
import soundfile as sf

from avcache.contract.dataset import DatasetError, read_dataset, write_dataset
from avcache.datasets.clips import load_clips
from avcache.datasets.stage import unfound


def wav(path, seconds, sr=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * sr), np.float32), sr)


def esc50(root, rows):
    """rows: (filename, fold, target, category, src_file)."""
    (root / "meta").mkdir(parents=True)
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for f, fold, target, cat, src in rows:
        lines.append(f"{f},{fold},{target},{cat},False,{src},A")
        wav(root / "audio" / f, 5)
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    return root


ESC = [
    ("1-100-A-0.wav", 1, 0, "dog", "100"),
    ("1-100-B-0.wav", 1, 0, "dog", "100"),
    ("2-200-A-1.wav", 2, 1, "rooster", "200"),
    ("3-300-A-0.wav", 3, 0, "dog", "300"),
    ("3-301-A-2.wav", 3, 2, "pig", "301"),
]


def test_esc50_classes_folds_sources_and_lengths(tmp_path):
    ds = load_clips(esc50(tmp_path / "ESC-50", ESC), "esc50")
    assert ds.kind == "clips" and ds.class_names == ["dog", "rooster", "pig"]  # by target index
    assert ds.paths[0] == "audio/1-100-A-0.wav" and ds.folds.tolist() == [1, 1, 2, 3, 3]
    assert ds.groups == ["100", "100", "200", "300", "301"] and ds.seconds.tolist() == [5] * 5
    assert ds.labels.argmax(1).tolist() == [0, 0, 1, 0, 2] and ds.test_folds == [1, 2, 3]
    write_dataset(ds, tmp_path / "d.h5")
    back = read_dataset(tmp_path / "d.h5")
    assert back.kind == "clips" and back.paths == ds.paths and back.groups == ds.groups
    assert np.array_equal(back.labels, ds.labels) and back.class_names == ds.class_names
    assert back.max_seconds == 5 and not back.multi_label


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [("a.wav", 1, 0, "dog", "1"), ("b.wav", 2, 0, "cat", "2")],
            r"esc50.csv:3: target 0 is 'cat' here but 'dog' before",
        ),
        (
            [("a.wav", 1, 0, "dog", "1"), ("b.wav", 2, 0, "dog", "1")],
            r"esc50.csv:3: source '1' is in fold 2 here and in fold 1 at .*esc50.csv:2: clips of one source must stay",
        ),
        ([("a.wav", "x", 0, "dog", "1")], r"esc50.csv:2: fold must be a whole number, got 'x'"),
    ],
)
def test_esc50_errors_name_file_and_line(tmp_path, rows, message):
    with pytest.raises(DatasetError, match=message):
        load_clips(esc50(tmp_path / "e", rows), "esc50")


def test_urbansound8k_reads_fold_folders_and_real_lengths(tmp_path):
    root = tmp_path / "UrbanSound8K"
    (root / "metadata").mkdir(parents=True)
    rows = [
        ("100-0-0-0.wav", "100", 0.0, 4.0, 1, 0, "air_conditioner"),
        ("200-3-0-1.wav", "200", 1.5, 2.74, 2, 3, "dog_bark"),
        ("200-3-0-2.wav", "200", 3.0, 3.4, 2, 3, "dog_bark"),
    ]
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for name, fs, a, b, fold, cid, cls in rows:
        lines.append(f"{name},{fs},{a},{b},1,{fold},{cid},{cls}")
        wav(root / "audio" / f"fold{fold}" / name, b - a)
    (root / "metadata" / "UrbanSound8K.csv").write_text("\n".join(lines) + "\n")
    ds = load_clips(root, "urbansound8k")
    assert ds.paths[1] == "audio/fold2/200-3-0-1.wav" and ds.class_names == ["air_conditioner", "dog_bark"]
    assert ds.seconds.tolist() == [4, 2, 1]  # 1.24 s -> 2 rows, 0.4 s -> 1 row
    assert ds.groups == ["100", "200", "200"] and ds.test_folds == [1, 2]


def scenes(root, kind):
    """A tiny TUT 2017 (4 folds, tab files without headers) or DCASE 2021 (tab csv with headers)."""
    files = [
        (f"audio/{loc}_{k}.wav", scene, loc)
        for loc, scene in (("a001", "park"), ("a002", "bus"), ("a003", "park"), ("a004", "home"))
        for k in range(2)
    ]
    for f, _, _ in files:
        wav(root / f, 10)
    setup = root / "evaluation_setup"
    setup.mkdir(parents=True)
    if kind == "tut2017":
        (root / "meta.txt").write_text("".join(f"{f}\t{s}\t{loc}\n" for f, s, loc in files))
        for k in range(1, 5):
            test = [x for x in files if x[2] == f"a00{k}"]
            (setup / f"fold{k}_evaluate.txt").write_text("".join(f"{f}\t{s}\n" for f, s, _ in test))
            (setup / f"fold{k}_train.txt").write_text(
                "".join(f"{f}\t{s}\n" for f, s, _ in files if (f, s, _) not in test)
            )
    else:
        (root / "meta.csv").write_text(
            "filename\tscene_label\tidentifier\tsource_label\n"
            + "".join(f"{f}\t{s}\t{loc}\ta\n" for f, s, loc in files)
        )
        head = "filename\tscene_label\n"
        (setup / "fold1_evaluate.csv").write_text(head + "".join(f"{f}\t{s}\n" for f, s, loc in files if loc == "a004"))
        (setup / "fold1_train.csv").write_text(head + "".join(f"{f}\t{s}\n" for f, s, loc in files if loc < "a003"))
    return root


def test_tut2017_folds_come_from_the_evaluate_lists(tmp_path):
    ds = load_clips(scenes(tmp_path / "tut", "tut2017"), "tut2017")
    assert ds.folds.tolist() == [1, 1, 2, 2, 3, 3, 4, 4] and ds.class_names == ["bus", "home", "park"]
    assert ds.groups[:2] == ["a001", "a001"] and ds.seconds.tolist() == [10] * 8


def test_tut2017_refuses_a_file_trained_and_evaluated_in_one_fold(tmp_path):
    root = scenes(tmp_path / "tut", "tut2017")
    with open(root / "evaluation_setup/fold1_train.txt", "a") as f:
        f.write("audio/a001_0.wav\tpark\n")
    with pytest.raises(
        DatasetError, match=r"fold1_train.txt:7: audio/a001_0.wav is in fold 1's train list and its evaluate"
    ):
        load_clips(root, "tut2017")


def test_dcase2021_train_evaluate_and_unused(tmp_path):
    ds = load_clips(scenes(tmp_path / "dcase", "dcase2021"), "dcase2021")
    assert ds.folds.tolist() == [0, 0, 0, 0, -1, -1, 1, 1] and ds.test_folds == [1]


def test_csv_multi_label_default_folds_by_source(tmp_path):
    root = tmp_path / "mine"
    rows = [
        ("x/a.wav", "speech;music", "s1"),
        ("x/b.wav", "speech", "s1"),
        ("x/c.wav", "music", "s2"),
        ("x/d.wav", "noise", "s3"),
        ("x/e.wav", "noise", "s4"),
    ]
    for f, _, _ in rows:
        wav(root / f, 2.5)
    (root / "clips.csv").write_text("path,label,group\n" + "".join(f"{f},{lab},{g}\n" for f, lab, g in rows))
    ds = load_clips(root, "csv")
    assert ds.multi_label and ds.class_names == ["music", "noise", "speech"]
    assert ds.labels[0].tolist() == [1, 0, 1] and ds.seconds.tolist() == [3] * 5
    assert ds.folds[0] == ds.folds[1] and set(ds.folds.tolist()) <= {1, 2, 3, 4, 5}  # a source stays together
    again = load_clips(root, "csv")
    assert np.array_equal(again.folds, ds.folds)  # deterministic


def test_csv_errors(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "clips.csv").write_text("path,label,fold\na.wav,dog,1\nb.wav,dog\n")
    with pytest.raises(DatasetError, match=r"clips.csv:3: expected 3 fields \(path,label,fold\), got 2"):
        load_clips(root, "csv")
    (root / "clips.csv").write_text("path,label,colour\na.wav,dog,red\n")
    with pytest.raises(DatasetError, match=r"clips.csv:1: unknown column\(s\) \['colour'\]"):
        load_clips(root, "csv")


def test_the_clip_demo_is_a_csv_dataset_with_sources_in_one_fold(tmp_path):
    from avcache.datasets import demo

    planned = demo.generate_clips(tmp_path / "cd", clips=12, classes=3, per_source=3, progress=False)
    ds = load_clips(tmp_path / "cd", "csv")
    assert ds.seconds.tolist() == [c.end for c in planned]  # lengths read back from the files
    for g in set(ds.groups):
        assert len({f for f, x in zip(ds.folds, ds.groups) if x == g}) == 1
    assert ds.labels.argmax(1).tolist() == [ds.class_names.index(demo.CLASSES[c.cls][0]) for c in planned]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_a_csv_path_outside_the_root_is_refused_naming_the_line(kind, tmp_path):
    root, elsewhere = tmp_path / "ds", tmp_path / "elsewhere"
    wav(root / "a.wav", 2.5)
    wav(elsewhere / "b.wav", 1.5)
    path = {"dotdot": "../elsewhere/b.wav", "absolute": str(elsewhere / "b.wav"), "symlink": "link.wav"}[kind]
    if kind == "symlink":
        (root / "link.wav").symlink_to(elsewhere / "b.wav")
    (root / "clips.csv").write_text(f"path,label\na.wav,dog\n{path},cat\n")
    with pytest.raises(
        DatasetError, match=rf"clips.csv:3: path '{path}' leads outside the dataset root .*allow_outside_root"
    ):
        load_clips(root, "csv")
    ds = load_clips(root, "csv", allow_outside_root=True)  # asked for: read where it is
    assert ds.paths == ["a.wav", path] and ds.seconds.tolist() == [3, 2]


def test_one_unreadable_clip_does_not_widen_the_time_axis(tmp_path):
    root = tmp_path / "ds"
    for name in ("a.wav", "b.wav"):
        wav(root / name, 2.5)
    (root / "bad.wav").write_bytes(b"not a sound file" * 10)
    (root / "clips.csv").write_text("path,label\na.wav,dog\nb.wav,cat\nbad.wav,cat\nmissing.wav,dog\n")
    ds = load_clips(root, "csv")
    assert ds.seconds.tolist() == [3, 3, 3, 3] and ds.max_seconds == 3  # was 10: max_seconds for the unreadable
    assert unfound(ds) == {"missing.wav": "no such file"}  # the dataset stage lists it
