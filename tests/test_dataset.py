import numpy as np
import pytest
from helpers import AVE

from avcache.contract.dataset import SPLITS, DatasetError, read_dataset, write_dataset
from avcache.datasets.ave import load_ave, parse_annotations

AVE_CLASSES = [
    "Church bell",
    "Male speech, man speaking",
    "Bark",
    "Fixed-wing aircraft, airplane",
    "Race car, auto racing",
    "Female speech, woman speaking",
    "Helicopter",
    "Violin, fiddle",
    "Flute",
    "Ukulele",
    "Frying (food)",
    "Truck",
    "Shofar",
    "Motorcycle",
    "Acoustic guitar",
    "Train horn",
    "Clock",
    "Banjo",
    "Goat",
    "Baby cry, infant cry",
    "Bus",
    "Chainsaw",
    "Cat",
    "Horse",
    "Toilet flush",
    "Rodents, rats, mice",
    "Accordion",
    "Mandolin",
]


@pytest.fixture(scope="module")
def ave():
    return load_ave(AVE, videos="/somewhere/AVE")


def test_real_ave_counts_classes_splits(ave):
    assert len(ave.video_ids) == 4143  # annotation entries: the rows of every cache
    assert len(set(ave.video_ids)) == 4097  # 45 videos carry 2 or 3 class annotations
    assert len(ave.shared_across_splits()) == 18  # ... 18 of them with entries in two splits
    assert ave.class_names == AVE_CLASSES
    assert ave.labels.shape == (4143, 10, 29)
    assert [len(ave.indices(s)) for s in SPLITS] == [3339, 402, 402]
    assert (ave.split >= 0).all()  # the three splits cover every video, each once


def test_real_ave_labels_follow_start_le_t_lt_end(ave):
    assert (ave.labels.sum(-1) == 1).all()
    i = ave.video_ids.index("MH3m4AwEcRY")  # Church bell&MH3m4AwEcRY&good&6&8
    assert ave.labels[i].argmax(-1).tolist() == [28] * 6 + [0, 0] + [28] * 2
    j = ave.video_ids.index("VWi2ENBuTbw")  # start == end == 0: all background
    assert ave.labels[j].argmax(-1).tolist() == [28] * 10
    # every label agrees with its annotation line (row k is the k-th entry)
    for k, a in enumerate(parse_annotations(AVE / "Annotations.txt")):
        assert ave.video_ids[k] == a.video_id
        row = ave.labels[k].argmax(-1)
        expect = [AVE_CLASSES.index(a.category) if a.start <= t < a.end else 28 for t in range(10)]
        assert row.tolist() == expect


def test_dataset_file_round_trip(ave, tmp_path):
    write_dataset(ave, tmp_path / "dataset.h5")
    back = read_dataset(tmp_path / "dataset.h5")
    assert back.video_ids == ave.video_ids and back.class_names == ave.class_names
    assert np.array_equal(back.labels, ave.labels) and np.array_equal(back.split, ave.split)
    assert back.videos == "/somewhere/AVE" and back.order_sha256 == ave.order_sha256
    write_dataset(ave, tmp_path / "again.h5")  # byte-identical: no HDF5 timestamps
    assert (tmp_path / "again.h5").read_bytes() == (tmp_path / "dataset.h5").read_bytes()


def _write(root, ann, train="", val="", test=""):
    root.mkdir(exist_ok=True)
    (root / "Annotations.txt").write_text(ann)
    for name, text in [("trainSet.txt", train), ("valSet.txt", val), ("testSet.txt", test)]:
        (root / name).write_text(text)
    return root


def test_header_line_is_accepted(tmp_path):
    ann = "Category&VideoID&Quality&StartTime&EndTime\nBark&a&good&0&3\nCat&b&bad&2&10\n"
    ds = load_ave(_write(tmp_path / "d", ann, train="Bark&a&good&0&3\n", test="Cat&b&bad&2&10\n"))
    assert ds.video_ids == ["a", "b"] and ds.class_names == ["Bark", "Cat"]
    assert ds.labels[0].argmax(-1).tolist() == [0, 0, 0] + [2] * 7


@pytest.mark.parametrize(
    "header",
    [
        "Category&VideoID&Quality&StartSec&EndSec",  # as the README shows it
        "class & youtube_id & quality & start & end",
        "a&b&c&d&e",
    ],
)
def test_any_header_line_is_recognised_by_its_shape(tmp_path, header):
    ds = load_ave(_write(tmp_path / "d", f"{header}\nBark&a&good&0&3\n", train=f"{header}\nBark&a&good&0&3\n"))
    assert ds.video_ids == ["a"] and ds.split.tolist() == [0]


def test_a_first_line_with_one_bad_number_is_an_error_not_a_header(tmp_path):
    with pytest.raises(DatasetError, match=r"Annotations.txt:1: start/end must be whole seconds, got '0', 'x'"):
        load_ave(_write(tmp_path / "d", "Bark&a&good&0&x\n"))


@pytest.mark.subprocess
def test_the_stage_prints_a_dataset_error_as_one_line_without_traceback(tmp_path):
    import subprocess
    import sys

    from helpers import REPO

    _write(tmp_path / "d", "Category&VideoID&Quality&StartSec&EndSec\nBark&a&good&0&3\nBark&b&good&zero&3\n")
    (tmp_path / "params.yaml").write_text(f"dataset: {{root: {tmp_path / 'd'}, videos: {tmp_path / 'd'}}}\n")
    p = subprocess.run(
        [sys.executable, "-m", "avcache", "dataset", "--out", "ds.h5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        f"dataset: {tmp_path / 'd' / 'Annotations.txt'}:3: start/end must be whole seconds, got 'zero', '3'"
    ]


def test_one_video_with_two_classes_gives_two_rows(tmp_path):
    ann = "Bark&a&good&0&3\nCat&a&good&5&10\n"
    ds = load_ave(_write(tmp_path / "d", ann, train="Cat&a&good&5&10\n", test="Bark&a&good&0&3\n"))
    assert ds.video_ids == ["a", "a"] and ds.split.tolist() == [2, 0]
    assert ds.shared_across_splits() == ["a"]


@pytest.mark.parametrize(
    "ann, train, message",
    [
        ("Bark&a&good&0\n", "", r"Annotations.txt:1: expected 5 fields"),
        ("Bark&a&good&0&3\nBark&b&good&x&3\n", "", r"Annotations.txt:2: start/end must be whole seconds"),
        ("Bark&a&good&5&3\n", "", r"Annotations.txt:1: need 0 <= start <= end <= 10"),
        ("Bark&a&good&0&3\nBark&a&good&0&3\n", "", r"Annotations.txt:2: a \(Bark\) is annotated twice"),
        ("Bark&a&good&0&3\n", "Cat&a&good&0&3\n", r"trainSet.txt:1: unknown class 'Cat'"),
        ("Bark&a&good&0&3\n", "Bark&a&good&0&3\nBark&zz&good&0&3\n", r"trainSet.txt:2: video zz is not in"),
        ("Bark&a&good&0&3\n", "Bark&a&good&0&4\n", r"trainSet.txt:1: a \(Bark,0,4\) disagrees"),
    ],
)
def test_bad_annotations_name_file_and_line(tmp_path, ann, train, message):
    with pytest.raises(DatasetError, match=message):
        load_ave(_write(tmp_path / "d", ann, train=train))


def test_video_in_two_splits_is_refused(tmp_path):
    root = _write(tmp_path / "d", "Bark&a&good&0&3\n", train="Bark&a&good&0&3\n", val="Bark&a&good&0&3\n")
    with pytest.raises(DatasetError, match=r"valSet.txt:1: a \(Bark\) is already in the train split"):
        load_ave(root)


@pytest.mark.parametrize("vid", ["../../../../etc/passwd", "sub/x", "a\\b", ".."])
def test_an_ave_id_that_is_a_path_is_refused_naming_the_line(vid, tmp_path):
    p = tmp_path / "Annotations.txt"
    p.write_text(f"Church bell&aaa&good&0&10\nChurch bell&{vid}&good&0&10\n")
    with pytest.raises(DatasetError, match=r"Annotations.txt:2: video id .* is a path, not an id"):
        parse_annotations(p)


def ave_folder(tmp_path, ids, present):
    """An AVE folder listing ``ids`` (all train) and a videos folder holding files for ``present``."""
    import yaml

    lines = "".join(f"Church bell&{v}&good&0&10\n" for v in ids)
    root, videos = tmp_path / "ave", tmp_path / "videos"
    root.mkdir()
    videos.mkdir()
    for name, text in [("Annotations.txt", lines), ("trainSet.txt", lines), ("valSet.txt", ""), ("testSet.txt", "")]:
        (root / name).write_text(text)
    for v in present:
        (videos / f"{v}.mp4").write_bytes(b"x")

    def params(on_failure, **dataset):
        cfg = {"dataset": {"format": "ave", "root": "ave", "videos": "videos", **dataset}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**cfg, "extract": {"on_failure": on_failure}}))

    return videos, params


def test_the_dataset_stage_lists_videos_without_a_file(tmp_path, monkeypatch, caplog):
    from avcache.datasets import stage

    videos, params = ave_folder(tmp_path, ["v1", "v2", "v3", "v4"], present=["v1", "v3"])
    (videos / "v3.mkv").write_bytes(b"x")  # two files for v3
    monkeypatch.chdir(tmp_path)
    params("mask")
    with caplog.at_level("WARNING"):
        stage.main(["--out", "ds.h5"])
    assert (
        "3 of 4 videos in videos have no file to extract: v2 (no file); v3 (2 files: v3.mkv and v3.mp4); v4 (no file)."
        in caplog.text
    )
    assert read_dataset("ds.h5").video_ids == ["v1", "v2", "v3", "v4"]
    params("stop")
    with pytest.raises(SystemExit) as e:
        stage.main(["--out", "ds2.h5"])
    msg = str(e.value.code)
    assert msg.startswith("dataset: 3 of 4 videos in videos have no file to extract: v2 (no file)") and "\n" not in msg
    assert "extract.on_failure is 'stop'" in msg and not (tmp_path / "ds2.h5").exists()


def test_a_video_linking_outside_the_videos_folder_is_refused(tmp_path, monkeypatch):
    from avcache.datasets import stage

    videos, params = ave_folder(tmp_path, ["v1", "v2"], present=["v1"])
    (tmp_path / "secret").write_bytes(b"x")
    (videos / "v2.mp4").symlink_to(tmp_path / "secret")
    monkeypatch.chdir(tmp_path)
    params("mask")
    with pytest.raises(SystemExit, match=r"dataset: videos/v2.mp4: video v2 links outside dataset.videos videos"):
        stage.main(["--out", "ds.h5"])
    params("mask", allow_outside_root=True)
    stage.main(["--out", "ds.h5"])
    assert read_dataset("ds.h5").video_ids == ["v1", "v2"]
