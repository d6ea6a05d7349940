"""The dataset file's kind picks its class and its task: the stage commands run localization on
an AVE dataset and clip classification on a clip dataset, each stage's lineage holds both."""

import json
import sys

import numpy as np
import pytest
from test_clip_heads import clip_project
from test_train import make_project

from avcache import cli, lineage, tasks
from avcache.contract.dataset import AveDataset, ClipDataset, read_dataset, read_kind

ARGS = ["--dataset", "dataset.h5", "--audio", "a.h5", "--visual", "v.h5", "--models", "models"]


def test_read_dataset_returns_the_kinds_class_and_videos_override(tmp_path):
    clips = clip_project(tmp_path / "c")
    make_project(tmp_path / "a")
    ave = read_dataset(tmp_path / "a/features/dataset.h5", videos=tmp_path / "elsewhere")
    back = read_dataset(tmp_path / "c/dataset.h5")
    assert isinstance(ave, AveDataset) and ave.videos == str(tmp_path / "elsewhere")
    assert ave.n_classes == 3 and ave.max_seconds == 10 and ave.test_folds == [] and ave.relative_paths()[0] is None
    assert isinstance(back, ClipDataset) and back.n_classes == 3 and back.test_folds == [1, 2, 3, 4, 5]
    assert back.max_seconds == int(clips.seconds.max()) and back.relative_paths() == clips.paths
    assert read_kind(tmp_path / "c/dataset.h5") == "clips" and read_kind(tmp_path / "a/features/dataset.h5") == "ave"


def test_each_task_stage_picks_its_module_by_the_dataset_kind(tmp_path):
    clip_project(tmp_path / "c")
    make_project(tmp_path / "a")
    for command, modules in tasks.TASKS.items():
        assert tasks.task_module(command, ["--dataset", str(tmp_path / "c/dataset.h5")]) == modules["clips"]
        assert tasks.task_module(command, ["--dataset", str(tmp_path / "a/features/dataset.h5")]) == modules["ave"]
        assert modules["clips"].startswith("avcache.classification.")
        assert modules["ave"].startswith("avcache.localization.")
        files = {lineage.module_file(m).relative_to(lineage.ROOT).as_posix() for m in modules.values()}
        assert files <= set(lineage.closure(*lineage.stages()[command]))  # both can run: both are its code
    with pytest.raises(SystemExit, match=r"train: .*missing\.h5: dataset file missing"):
        tasks.task_module("train", ["--dataset", str(tmp_path / "missing.h5")])


def test_the_stage_commands_run_the_clip_task_on_a_clip_dataset(tmp_path, monkeypatch, capsys):
    clip_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", sys.argv[:])
    (tmp_path / "params.yaml").write_text("model: linear\nmodels: {linear: {inputs: both}}\ntrain: {seeds: [0]}\n")
    cli.main(["train", *ARGS])
    assert (tmp_path / "models/clips.npz").is_file()
    assert json.loads((tmp_path / "models/training.json").read_text())["task"] == "clips"
    cli.main(["evaluate", *ARGS, "--results", "results"])
    metrics = json.loads((tmp_path / "results/metrics.json").read_text())
    assert metrics["task"] == "clips" and metrics["test"]["acc"] > 0.8
    cli.main(["attention", *ARGS, "--out", "attention"])
    assert (tmp_path / "attention/README.txt").read_text().startswith("No attention maps: ")
    assert "attention: no maps" in capsys.readouterr().out
    (tmp_path / "params.yaml").write_text("model: av_att\ntrain: {seeds: [0]}\n")
    with pytest.raises(SystemExit, match="train: params.yaml: model 'av_att' is not a clip head"):
        cli.main(["train", *ARGS])


def test_the_ave_task_on_an_ave_dataset(tmp_path, monkeypatch):
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", sys.argv[:])
    (tmp_path / "params.yaml").write_text(
        "model: av_att\nmodels: {av_att: {hidden_dim: 16, hidden_size: 32}}\n"
        "train: {seeds: [0], epochs: 2, batch_size: 16, device: cpu}\n"
    )
    args = ["--dataset", "features/dataset.h5", "--audio", "features/audio/fa.h5"]
    args += ["--visual", "features/visual/fv.h5", "--models", "models"]
    cli.main(["train", *args])
    assert json.loads((tmp_path / "models/training.json").read_text())["seeds"][0]["seed"] == 0
    assert (tmp_path / "models/seed0.pt").is_file() and not (tmp_path / "models/clips.npz").exists()
    cli.main(["evaluate", *args, "--results", "results"])
    metrics = json.loads((tmp_path / "results/metrics.json").read_text())
    assert metrics["model"] == "av_att" and "task" not in metrics and np.isfinite(metrics["test"]["acc"])
