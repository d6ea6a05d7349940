"""The dataset file's kind picks its class and its task: the stage commands run localization on
an AVE dataset and clip classification on a clip dataset, each stage's lineage holds both."""

import json
import sys

import numpy as np
import pytest
from helpers import clip_project, make_project

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
    (tmp_path / "params.yaml").write_text("model: linear\ntrain: {seeds: [0]}\n")
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


def test_one_modality_tasks_open_only_the_caches_inputs_lists(tmp_path, monkeypatch, capsys):
    """params.yaml `inputs: [audio]` / `[visual]`: the other cache does not exist (no extraction
    stage made it) and train, evaluate and attention never open it; a model that needs it refuses."""
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", sys.argv[:])
    args = ["--dataset", "features/dataset.h5", "--audio", "features/audio/fa.h5"]
    args += ["--visual", "features/visual/fv.h5", "--models", "models"]
    recipe = "train: {seeds: [0], epochs: 1, batch_size: 16, device: cpu}\n"
    for only, model, other in (("audio", "audio_only", "visual/fv.h5"), ("visual", "visual_only", "audio/fa.h5")):
        (tmp_path / "features" / other).rename(tmp_path / "away.h5")
        small = f"models: {{{model}: {{hidden_dim: 16, hidden_size: 32}}}}\n"
        (tmp_path / "params.yaml").write_text(f"inputs: [{only}]\nmodel: {model}\n{small}{recipe}")
        cli.main(["train", *args])
        assert list(json.loads((tmp_path / "models/training.json").read_text())["caches"]) == [only]
        cli.main(["evaluate", *args, "--results", "results"])
        metrics = json.loads((tmp_path / "results/metrics.json").read_text())
        assert metrics["model"] == model and metrics[only] == {"audio": "fa", "visual": "fv"}[only]
        assert 0 <= metrics["test"]["acc"] <= 1 and {"audio", "visual"} & set(metrics) == {only}
        (tmp_path / "away.h5").rename(tmp_path / "features" / other)
    (tmp_path / "features/visual/fv.h5").rename(tmp_path / "away.h5")
    (tmp_path / "params.yaml").write_text(f"inputs: [audio]\nmodel: audio_only\n{recipe}")
    cli.main(["train", *args])
    cli.main(["attention", *args, "--out", "attention"])
    assert "no visual attention" in (tmp_path / "attention/README.txt").read_text()
    (tmp_path / "params.yaml").write_text(f"inputs: [audio]\nmodel: av_att\n{recipe}")
    with pytest.raises(SystemExit) as e:
        cli.main(["train", *args])
    assert str(e.value) == (
        "train: params.yaml: inputs is ['audio'] but model av_att reads audio and visual: "
        "add visual to inputs or choose model audio_only"
    )
    (tmp_path / "params.yaml").write_text(f"inputs: [sound]\nmodel: audio_only\n{recipe}")
    with pytest.raises(SystemExit, match=r"train: params.yaml: inputs must be a non-empty list of distinct names"):
        cli.main(["train", *args])


def test_clip_heads_read_the_top_level_inputs(tmp_path, monkeypatch):
    """One source of truth: `inputs` picks the caches a clip head reads; `models.<head>.inputs` is refused."""
    clip_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", sys.argv[:])
    (tmp_path / "v.h5").rename(tmp_path / "away.h5")  # never opened
    (tmp_path / "params.yaml").write_text("inputs: [audio]\nmodel: linear\ntrain: {seeds: [0]}\n")
    cli.main(["train", *ARGS])
    training = json.loads((tmp_path / "models/training.json").read_text())
    assert training["inputs"] == "audio" and list(training["caches"]) == ["audio"]
    (tmp_path / "away.h5").rename(tmp_path / "v.h5")
    (tmp_path / "params.yaml").write_text("model: linear\ntrain: {seeds: [0]}\n")  # default: both
    cli.main(["train", *ARGS])
    assert json.loads((tmp_path / "models/training.json").read_text())["inputs"] == "both"
    (tmp_path / "params.yaml").write_text("model: linear\nmodels: {linear: {inputs: audio}}\n")
    with pytest.raises(SystemExit, match=r"train: params.yaml: models.linear.inputs is not an option: the top-level"):
        cli.main(["train", *ARGS])
