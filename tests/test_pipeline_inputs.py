"""`inputs` and `demos` through real DVC: an audio-only task on real ESC-10 clips and a visual-only
AVE task run end to end with no stage, file or demo of what they do not use."""

import json
import os
import shutil
import sys

import h5py
import pytest
from helpers import REPO, copy_repo

ESC10 = REPO.parent / "shared" / "data" / "esc10"
DVC = shutil.which("dvc", path=os.path.dirname(sys.executable))

pytestmark = [
    pytest.mark.skipif(DVC is None, reason="dvc not installed in this environment"),
    pytest.mark.dvc,
    pytest.mark.subprocess,
    pytest.mark.slow,
]


def esc10_subset(dst, classes=2, per_fold=2):
    """The first ``per_fold`` clips of each official fold of the first ``classes`` ESC-10 classes."""
    for folder in sorted(d for d in ESC10.iterdir() if d.is_dir())[:classes]:
        (dst / folder.name).mkdir(parents=True)
        for fold in "12345":
            for clip in sorted(folder.glob(f"{fold}-*.ogg"))[:per_fold]:
                shutil.copy(clip, dst / folder.name / clip.name)


@pytest.mark.skipif(not ESC10.is_dir(), reason="../shared/data/esc10 not present")
def test_an_audio_only_task_on_real_esc10_runs_through_dvc_exp_run(tmp_path):
    p = copy_repo(tmp_path / "repo")
    esc10_subset(p.path / "esc10")
    p.params(
        inputs=["audio"],
        audio="musicnn",
        model="linear",
        demos=[],
        dataset={"format": "esc10", "root": "esc10", "videos": "esc10", "max_seconds": 10},
        train__seeds=[0],
    )
    p.sh("git", "init", "-q")
    p.commit("init")
    stages = p.sh("dvc", "stage", "list")
    assert "extract@audio" in stages and "visual" not in stages and "demo" not in stages
    out = p.sh("dvc", "exp", "run")
    assert p.ran(out) == ["lineage", "dataset", "extract@audio", "train", "evaluate", "attention"]
    assert not (p.path / "features/visual").exists() and not (p.path / "data").exists()
    assert sorted(os.listdir(p.path / "features/audio")) == ["musicnn.h5", "musicnn.report.json"]
    with h5py.File(p.path / "features/audio/musicnn.h5") as f:
        assert f["features"].shape == (20, 5, 192)  # 5-s clips, cnn1-3 concatenated
    metrics = json.loads((p.path / "results/metrics.json").read_text())
    assert (metrics["task"], metrics["inputs"], metrics["audio"]) == ("clips", "audio", "musicnn")
    assert "visual" not in metrics and metrics["test_clips"] == 20 and set(metrics["per_fold"]) == set("12345")
    assert metrics["test"]["acc"] > 0.75  # dog bark vs rain from real recordings; chance is 0.5
    assert "up to date" in p.sh("dvc", "status")

    # a CNN on a log-mel cache of the same clips, then back to musicnn: restored, not re-extracted
    cnn = ["-S", "audio=logmel", "-S", "model=lowcomplexity", "-S", "models.lowcomplexity.max_epochs=3"]
    out = p.sh("dvc", "exp", "run", *cnn, "-S", "models.lowcomplexity.width=8", "-S", "extractors.logmel.n_mels=40")
    assert p.ran(out) == ["lineage", "extract@audio", "train", "evaluate", "attention"]
    assert sorted(os.listdir(p.path / "features/audio")) == ["logmel.h5", "logmel.report.json"]
    with h5py.File(p.path / "features/audio/logmel.h5") as f:
        assert f["features"].shape == (20, 5, 50, 40)  # 5 s x 50 frames/s x 40 mel bands
    metrics = json.loads((p.path / "results/metrics.json").read_text())
    assert metrics["audio"] == "logmel" and metrics["model_size"]["dcase2021_nonzero_bytes"] <= 128_000
    out = p.sh("dvc", "exp", "run", "-S", "audio=musicnn", "-S", "model=linear")
    assert "extract@audio" not in p.ran(out)  # DVC's run-cache restored features/audio/musicnn.h5
    assert sorted(os.listdir(p.path / "features/audio")) == ["musicnn.h5", "musicnn.report.json"]


def test_a_visual_only_ave_task_runs_through_dvc_exp_run(tmp_path):
    p = copy_repo(tmp_path / "repo")
    p.params(
        inputs=["visual"],
        visual="efficientnet",
        model="visual_only",
        demo__videos=10,
        demo__classes=2,
        train__epochs=2,
        train__batch_size=2,
        train__seeds=[0],
        models__visual_only__hidden_size=16,
        extractors__efficientnet__frames_per_second=1,
        extractors__efficientnet__reduction={"method": "pca", "dim": 8},
    )
    p.sh("git", "init", "-q")
    p.commit("init")
    out = p.sh("dvc", "exp", "run")
    assert p.ran(out) == ["lineage", "demos@demo", "dataset", "extract@visual", "train", "evaluate", "attention"]
    assert not (p.path / "features/audio").exists() and not (p.path / "data/clip_demo").exists()
    metrics = json.loads((p.path / "results/metrics.json").read_text())
    assert (metrics["model"], metrics["visual"]) == ("visual_only", "efficientnet") and "audio" not in metrics
    assert 0 <= metrics["test"]["acc"] <= 1
    assert list((p.path / "results/attention").glob("*.png"))  # the visual attention, drawn on test videos
    # an AVE model that needs the audio cache is refused in one line naming the param
    r = p.sh("dvc", "exp", "run", "-S", "model=av_att", ok=False)
    assert "train: params.yaml: inputs is ['visual'] but model av_att reads audio and visual" in r
    assert "Traceback" not in r


def test_a_dry_run_on_a_fresh_clone_lists_every_stage(tmp_path):
    """`make dry` (`dvc repro --dry --force-downstream`) on a clone with no outputs: DVC's own
    `--dry` stops at the first stage whose inputs are not made yet (treeverse/dvc#9818)."""
    p = copy_repo(tmp_path / "repo")
    p.sh("git", "init", "-q")
    p.commit("init")
    p.sh("git", "clone", "-q", str(p.path), str(tmp_path / "clone"))
    clone = type(p)(tmp_path / "clone")
    out = clone.sh("dvc", "repro", "--dry", "--force-downstream")
    stages = ["lineage", "demos@demo", "dataset", "extract@audio", "extract@visual", "train", "evaluate", "attention"]
    assert clone.ran(out) == stages
    assert not (clone.path / "data/demo").exists() and not (clone.path / "features/dataset.h5").exists()
    clone.params(inputs=["audio"], demos=[])
    out = clone.sh("dvc", "repro", "--dry", "--force-downstream")
    assert clone.ran(out) == ["lineage", "dataset", "extract@audio", "train", "evaluate", "attention"]
