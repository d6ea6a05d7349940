"""The extraction stage end to end on a tiny demo, and the DVC pipeline itself."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from conftest import REPO
from extract import run
from extract.cache import read_features, read_provenance
from extract.dataset import load_ave


VISUAL = {"frames_per_second": 1, "reduction": {"method": "pca", "dim": 16}}


def test_visual_stage_with_train_fitted_pca(demo_ds, tmp_path):
    out = run.run("visual", "efficientnet", VISUAL, demo_ds, demo_ds.videos, tmp_path / "e.h5", progress=False)
    feats = read_features(out, demo_ds)
    assert feats.shape == (12, 10, 7, 7, 16) and np.isfinite(feats).all()
    prov = read_provenance(out)
    assert prov["reduction"]["method"] == "pca" and prov["fit_split"] == "train"
    n_train = len(demo_ds.indices("train"))
    assert prov["reduction"]["fitted_on_vectors"] == n_train * 10 * 49
    assert prov["frames_per_second"] == 1 and prov["dataset_order_sha256"] == demo_ds.order_sha256
    with h5py.File(out) as f:
        assert f["reduction/components"].shape == (16, 1280)
        assert f["media/held_frames"][()].sum() == 0
    # the training rows are centred by the fit (test rows need not be)
    train_mean = feats[demo_ds.indices("train")].reshape(-1, 16).mean(0)
    assert np.abs(train_mean).max() < 1e-3 * np.abs(feats).max()
    # deterministic: a second run gives identical features
    again = run.run("visual", "efficientnet", VISUAL, demo_ds, demo_ds.videos, tmp_path / "e2.h5", progress=False)
    assert np.array_equal(feats, read_features(again, demo_ds))
    assert not list(tmp_path.glob(".*fit.h5"))  # scratch removed


def test_audio_stage_rows_equal_single_video_extraction(demo_ds, tmp_path):
    out = run.run("audio", "musicnn", {"reduction": {"method": "none"}}, demo_ds, demo_ds.videos,
                  tmp_path / "m.h5", progress=False)
    feats = read_features(out, demo_ds)
    assert feats.shape == (12, 10, 192)
    from extract import extractors
    from extract.reduce import make_reduction
    one, facts, _ = run.extract_video(extractors.create("musicnn", {}), make_reduction(None),
                                      run.video_path(demo_ds.videos, demo_ds.video_ids[5]))
    assert np.array_equal(feats[5], one)
    with h5py.File(out) as f:
        assert f.attrs["code_sha256"] == run.code_sha256("musicnn")
        assert abs(f["media/source_seconds"][5] - facts["source_seconds"]) < 1e-4


def test_missing_videos_are_reported_and_policy_stop_publishes_nothing(demo_ds, tmp_path):
    import json
    broken = load_ave(demo_ds.source)
    broken.videos = str(tmp_path)  # no videos there
    with pytest.raises(run.StageError, match="12 videos failed and extract.on_failure is 'stop'"):
        run.run("audio", "musicnn", {}, broken, broken.videos, tmp_path / "m.h5", progress=False,
                on_failure="stop")
    assert not (tmp_path / "m.h5").exists()
    report = json.loads((tmp_path / "m.report.json").read_text())
    assert report["failed"][0]["video"] == "demo00000"
    assert report["failed"][0]["reason"].endswith("demo00000.mp4: file not found")


@pytest.mark.skipif(shutil.which("dvc", path=os.path.dirname(sys.executable)) is None,
                    reason="dvc not installed in this environment")
def test_dvc_repro_then_up_to_date(tmp_path):
    """The real pipeline on a 10-video demo: repro builds every cache, trains, evaluates; then nothing is stale."""
    work = tmp_path / "repo"
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(  # basenames: .dvc/cache is "cache"
        ".venv", ".git", "features", "data", "cache", "tmp", "dvc.lock", "__pycache__", "models",
        "results", "dvclive", ".train_work", ".pytest_cache"))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["demo"].update(videos=10, classes=2)
    params["train"].update(epochs=2, batch_size=2, seeds=[0, 1], hidden_size=16)
    params["extractors"]["efficientnet"].update(frames_per_second=1, reduction={"method": "pca", "dim": 8})
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "DVC_NO_ANALYTICS": "1"}

    def sh(*cmd):
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    sh("git", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")  # dvclive needs a commit
    sh("dvc", "repro")
    assert (work / "features/audio/musicnn.h5").is_file()
    assert (work / "features/visual/efficientnet.h5").is_file()
    assert "test.acc" in sh("dvc", "metrics", "show")
    assert "up to date" in sh("dvc", "status")
    assert "didn't change" in sh("dvc", "repro").lower() or "up to date" in sh("dvc", "status")
    # changing one extractor's params re-runs only that extractor
    params["extractors"]["efficientnet"]["reduction"]["dim"] = 4
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = sh("dvc", "status")
    assert "extract_visual@efficientnet" in status and "extract_audio@musicnn" not in status
    # switching the model touches training and evaluation only
    params["extractors"]["efficientnet"]["reduction"]["dim"] = 8
    params["model"] = "dmrn"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = sh("dvc", "status")
    assert "train" in status and "extract_" not in status
