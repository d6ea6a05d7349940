"""params.yaml mistakes stop a stage with one line naming the key, before any work (no traceback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from avcache.contract import params as P

ROOT = Path(__file__).resolve().parents[1]


def project_params(tmp_path: Path, **changes) -> Path:
    """The project's params.yaml in ``tmp_path`` with top-level ``changes`` (None removes a key)."""
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def stage_exit(main, argv, tmp_path, monkeypatch) -> str:
    """Run a stage's main in ``tmp_path``; the one-line message it exits with."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    msg = str(e.value.code)
    assert "\n" not in msg
    return msg


STAGE_ARGS = {
    "avcache.datasets.stage": ["--out", "ds.h5"],
    "avcache.datasets.demo": [],
    "avcache.extraction.stage": ["audio", "musicnn", "--dataset", "ds.h5", "--out", "a.h5"],
    "avcache.localization.train": ["--dataset", "ds.h5", "--audio", "a.h5", "--visual", "v.h5", "--models", "m"],
    "avcache.localization.evaluate": [
        "--dataset",
        "ds.h5",
        "--audio",
        "a.h5",
        "--visual",
        "v.h5",
        "--models",
        "m",
        "--results",
        "r",
    ],  # fmt: skip
    "avcache.localization.attention": [
        "--dataset",
        "ds.h5",
        "--audio",
        "a.h5",
        "--visual",
        "v.h5",
        "--models",
        "m",
        "--out",
        "o",
    ],  # fmt: skip
}


def test_project_params_load():
    assert set(P.load(ROOT / "params.yaml")) <= set(P.TOP_LEVEL)


def test_unknown_top_level_key_is_named(tmp_path):
    path = project_params(tmp_path, modle="dmrn")
    with pytest.raises(P.ParamsError, match=r"unknown top-level key\(s\) \['modle'\]; accepted: audio, visual, model"):
        P.load(path)


@pytest.mark.parametrize("module", sorted(STAGE_ARGS))
def test_every_stage_refuses_unknown_top_level_key(module, tmp_path, monkeypatch):
    import importlib

    project_params(tmp_path, modle="dmrn")
    msg = stage_exit(importlib.import_module(module).main, STAGE_ARGS[module], tmp_path, monkeypatch)
    assert "modle" in msg and "accepted" in msg
    assert not (tmp_path / "ds.h5").exists() and not (tmp_path / "m").exists()


def test_params_not_a_mapping(tmp_path):
    (tmp_path / "params.yaml").write_text("- a\n- b\n")
    with pytest.raises(P.ParamsError, match="must be a mapping of sections"):
        P.load(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("module", "key", "value"),
    [
        ("avcache.datasets.stage", "dataset", 5),
        ("avcache.localization.train", "train", 7),
        ("avcache.localization.attention", "attention", "x"),
        ("avcache.extraction.stage", "extract", [1]),
        ("avcache.datasets.demo", "demo", 3),
    ],
)
def test_section_not_a_mapping_is_one_line(module, key, value, tmp_path, monkeypatch):
    import importlib

    project_params(tmp_path, **{key: value})
    msg = stage_exit(importlib.import_module(module).main, STAGE_ARGS[module], tmp_path, monkeypatch)
    assert f"params.yaml: {key} must be a mapping" in msg


@pytest.mark.parametrize(
    ("model", "key", "value"),
    [("av_att", "hidden_size", -1), ("av_att", "hidden_dim", -5), ("dmrn", "hidden_dim", 0), ("dmrn_gru", "blocks", 0)],
)
def test_model_sizes_must_be_positive(model, key, value):
    from avcache.localization.models import check_options

    with pytest.raises(P.ParamsError, match=rf"models\.{model}\.{key} must be a positive integer, got {value}"):
        check_options(model, {key: value})


def test_train_stage_names_the_model_size(tmp_path, monkeypatch):
    from avcache.localization import train

    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    project_params(tmp_path, models={**cfg["models"], "av_att": {**cfg["models"]["av_att"], "hidden_dim": -5}})
    msg = stage_exit(train.main, STAGE_ARGS["avcache.localization.train"], tmp_path, monkeypatch)
    assert "models.av_att.hidden_dim" in msg and "hidden_size" not in msg


def test_attention_videos_not_negative():
    with pytest.raises(P.ParamsError, match=r"attention\.videos must be 0 \(no maps\) or more, got -1"):
        P.from_params(P.AttentionParams, {"videos": -1}, "attention")
    assert P.from_params(P.AttentionParams, {"videos": 0}, "attention").videos == 0


@pytest.mark.parametrize(
    ("section", "key"),
    [("demo", "videos"), ("demo", "fps"), ("clip_demo", "clips"), ("clip_demo", "folds"), ("clip_demo", "per_source")],
)
def test_demo_counts_at_least_one(section, key, tmp_path, monkeypatch):
    from avcache.datasets import demo

    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())
    project_params(tmp_path, **{section: {**cfg[section], key: -3}})
    argv = [] if section == "demo" else ["clips"]
    msg = stage_exit(demo.main, argv, tmp_path, monkeypatch)
    assert f"{section}.{key} must be at least 1, got -3" in msg
    assert not (tmp_path / cfg[section]["out"]).exists()


@pytest.mark.subprocess
def test_typo_subprocess_one_line(tmp_path):
    project_params(tmp_path, modle="dmrn")
    r = subprocess.run(
        [sys.executable, "-m", "avcache", "dataset", "--out", "ds.h5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "modle" in r.stderr
    assert not (tmp_path / "ds.h5").exists()


def run_avcache(args, cwd, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "avcache", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]},
        timeout=timeout,
    )


@pytest.mark.subprocess
@pytest.mark.parametrize("modality", ["audio", "visual"])
def test_lineage_stage_refuses_unknown_extractor(modality, tmp_path):
    project_params(tmp_path, **{modality: "nosuch"})
    r = run_avcache(["lineage", "lineage"], tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{modality}: unknown extractor 'nosuch'; registered: " in r.stderr and "musicnn" in r.stderr
    assert not (tmp_path / "lineage").exists()


def test_dvc_yaml_lineage_depends_on_the_selection():
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["lineage"]
    assert {"audio", "visual"} <= set(stage.get("params", []))


@pytest.mark.dvc
@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("dvc", path=str(Path(sys.executable).parent)) is None, reason="no dvc")
def test_dvc_exp_typo_in_extractor_fails_in_lineage(tmp_path):
    """`-S audio=nosuch` after a good run: lineage reruns (its params changed) and names the extractor."""
    shutil.copytree(ROOT / "avcache", tmp_path / "avcache", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    project_params(tmp_path)
    dvc = str(Path(sys.executable).parent / "dvc")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def sh(*args):
        return subprocess.run([dvc, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)

    assert sh("init", "--no-scm", "-q").returncode == 0
    assert sh("repro", "lineage").returncode == 0
    project_params(tmp_path, audio="nosuch")
    r = sh("repro", "extract_audio")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "unknown extractor 'nosuch'; registered: " in out and "Traceback" not in out


ANN = b"Category&VideoID&Quality&StartSecond&EndSecond\nChurch bell&aaa&good&0&10\n"


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("fmt", "name", "content", "line", "what"),
    [
        ("ave", "Annotations.txt", ANN + b"Church bell&b\xe9b&good&0&10\n", 3, "not UTF-8 text (byte 0xe9)"),
        ("ave", "Annotations.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", 1, "not UTF-8 text (byte 0x89)"),
        ("ave", "Annotations.txt", ANN + b"Church bell&b\x00b&good&0&10\n", 3, "a NUL byte"),
        ("ave", "trainSet.txt", ANN.replace(b"aaa", b"a\x00a"), 2, "a NUL byte"),
        ("csv", "clips.csv", b"path,label\nclips/a.mp4,dog\nclips/\xff.mp4,cat\n", 3, "not UTF-8 text (byte 0xff)"),
        ("csv", "clips.csv", b"path,label\nclips/a\x00.mp4,dog\n", 2, "a NUL byte"),
    ],
)
def test_unreadable_metadata_is_one_line(fmt, name, content, line, what, tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    if fmt == "ave":
        for f in ("Annotations.txt", "trainSet.txt", "valSet.txt", "testSet.txt"):
            (root / f).write_bytes(ANN)
    (root / name).write_bytes(content)
    project_params(tmp_path, dataset={"format": fmt, "root": "ds", "videos": "ds", "max_seconds": 10})
    r = run_avcache(["dataset", "--out", "ds.h5"], tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert f"{name}:{line}: {what}" in r.stderr, r.stderr
    assert not (tmp_path / "ds.h5").exists()


def test_counts_in_messages_agree():
    from avcache.contract.io import counted

    assert [counted(n, "video") for n in (0, 1, 2)] == ["0 videos", "1 video", "2 videos"]
    assert counted(1, "class", "classes") == "1 class" and counted(3, "entry", "entries") == "3 entries"


def test_counts_of_one_are_singular_everywhere():
    import numpy as np

    from avcache.extraction.reduce import _pca_from_moments
    from avcache.runtime import _no_gpu

    with pytest.raises(ValueError, match=r"PCA to 1 component needs more than 1 vector, got 1"):
        _pca_from_moments(1, np.zeros(3), np.zeros((3, 3)), 1)
    assert "there is only 1 CUDA device visible" in str(_no_gpu("cuda:1", "extract.device", "PyTorch", 1, "x"))


def test_one_unwritten_row_is_singular(tmp_path):
    import numpy as np

    from avcache.contract.cache import CacheError, CacheWriter

    with pytest.raises(CacheError, match=r"c\.h5: 1 row never written"):
        with CacheWriter(tmp_path / "c.h5", ["v1", "v2"], (10, 4), {}) as w:
            w.write(0, np.ones((10, 4)))
