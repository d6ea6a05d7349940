"""The extraction stage end to end on a tiny demo, and the DVC pipeline itself."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from helpers import Project, copy_repo, save_tiny_maskformer, save_tiny_wav2vec2

from avcache.contract.cache import read_features, read_provenance
from avcache.contract.dataset import read_dataset
from avcache.datasets.ave import load_ave
from avcache.extraction import stage as run

VISUAL = {"frames_per_second": 1, "reduction": {"method": "pca", "dim": 16}}


@pytest.mark.slow
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
    assert sorted(f.name for f in tmp_path.iterdir()) == ["e.h5", "e.report.json", "e2.h5", "e2.report.json"]


@pytest.mark.slow
def test_audio_stage_rows_equal_single_video_extraction(demo_ds, tmp_path):
    out = run.run(
        "audio",
        "musicnn",
        {"reduction": {"method": "none"}},
        demo_ds,
        demo_ds.videos,
        tmp_path / "m.h5",
        progress=False,
    )
    feats = read_features(out, demo_ds)
    assert feats.shape == (12, 10, 192)
    from avcache.extraction import extractors
    from avcache.extraction.reduce import make_reduction

    one, facts, _ = run.extract_video(
        extractors.create("musicnn", {}), make_reduction(None), run.video_path(demo_ds.videos, demo_ds.video_ids[5])
    )
    assert np.array_equal(feats[5], one)
    with h5py.File(out) as f:
        assert f.attrs["code_sha256"] == run.code_sha256("musicnn")
        assert abs(f["media/source_seconds"][5] - facts["source_seconds"]) < 1e-4


def test_missing_videos_are_reported_and_policy_stop_publishes_nothing(demo_ds, tmp_path):
    import json

    broken = load_ave(demo_ds.source, videos=str(tmp_path))  # no videos there
    with pytest.raises(run.StageError, match="12 videos failed and extract.on_failure is 'stop'"):
        run.run("audio", "musicnn", {}, broken, broken.videos, tmp_path / "m.h5", progress=False, on_failure="stop")
    assert not (tmp_path / "m.h5").exists()
    report = json.loads((tmp_path / "m.report.json").read_text())
    assert report["failed"][0]["video"] == "demo00000"
    assert report["failed"][0]["reason"].endswith("demo00000.mp4: file not found")


DVC = shutil.which("dvc", path=os.path.dirname(sys.executable))


def needs_dvc(test):
    """A test of the pipeline itself: real `dvc` (and `python -m avcache`) subprocesses, minutes."""
    for mark in (
        pytest.mark.skipif(DVC is None, reason="dvc not installed in this environment"),
        pytest.mark.dvc,
        pytest.mark.subprocess,
        pytest.mark.slow,
    ):
        test = mark(test)
    return test


def plt_image_size(path):
    """(width, height) of a PNG, from its header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.fixture(scope="session")
def pristine(tmp_path_factory):
    """The real pipeline on a 10-video demo, reproduced once per session: every cache built, trained,
    evaluated. Never changed: each test works on its own copy (``project``)."""
    if DVC is None:
        pytest.skip("dvc not installed in this environment")
    tmp = tmp_path_factory.mktemp("pipeline")
    p = copy_repo(tmp / "repo")
    p.params(
        demos=["demo", "clip_demo"],
        demo__videos=10,
        demo__classes=2,
        clip_demo__clips=20,
        train__epochs=2,
        train__batch_size=2,
        train__seeds=[0, 1],
        models__av_att__hidden_size=16,
        extractors__efficientnet__frames_per_second=1,
        extractors__efficientnet__reduction={"method": "pca", "dim": 8},
        extractors__wav2vec2__model=save_tiny_wav2vec2(tmp / "w2v2"),
        extractors__wav2vec2__reduction={"method": "pca", "dim": 8},
        extractors__maskformer__model=save_tiny_maskformer(tmp / "maskformer"),
        extractors__maskformer__frames_per_second=1,
        extractors__maskformer__input_size=64,
    )
    p.sh("git", "init", "-q")
    p.commit("init")  # dvclive and experiments need a commit
    out = p.sh("dvc", "repro")
    assert p.ran(out) == [
        "lineage",
        "demos@demo",
        "demos@clip_demo",
        "dataset",
        "extract@audio",
        "extract@visual",
        "train",
        "evaluate",
        "attention",
    ]
    p.commit("repro")
    return p


def copy_of(template, path):
    """A project of its own: tests change it freely, and run alone and in any order."""
    shutil.copytree(template.path, path)  # outputs linked to DVC's cache become plain copies
    return Project(path)


@pytest.fixture
def project(pristine, tmp_path):
    """A copy of the reproduced project."""
    return copy_of(pristine, tmp_path / "repo")


@pytest.fixture(scope="session")
def other_pair(pristine, tmp_path_factory):
    """The reproduced project after one experiment with another pair of extractors (once per session;
    never changed): (the project, the experiment's output)."""
    p = copy_of(pristine, tmp_path_factory.mktemp("other-pair") / "repo")
    return p, p.sh("dvc", "exp", "run", "-n", "other-pair", "-S", "audio=wav2vec2", "-S", "visual=maskformer")


@pytest.fixture
def after_other_pair(other_pair, tmp_path):
    """A copy of the project after the other-pair experiment, and that experiment's output."""
    template, out = other_pair
    return copy_of(template, tmp_path / "repo"), out


@needs_dvc
def test_repro_builds_everything_and_code_changes_rerun_exactly_their_stages(project):
    p = project
    assert (p.path / "features/audio/musicnn.h5").is_file()
    assert (p.path / "features/visual/efficientnet.h5").is_file()
    assert "test.acc" in p.sh("dvc", "metrics", "show")
    maps = sorted((p.path / "results/attention").glob("*.png"))
    test_ids = read_dataset(p.path / "features/dataset.h5").video_ids
    assert maps and {m.stem for m in maps} <= set(test_ids)
    assert plt_image_size(maps[0])[0] > 2 * plt_image_size(maps[0])[1]  # ten seconds side by side
    assert "up to date" in p.sh("dvc", "status")
    # a helper only wav2vec2 and maskformer import: no selected cache is affected
    with open(p.path / "avcache/extraction/extractors/hf.py", "a") as f:
        f.write("# edited\n")
    status = p.sh("dvc", "status")
    assert "lineage:" in status and "extract@" not in status and "train" not in status
    assert p.ran(p.sh("dvc", "repro")) == ["lineage"]
    assert "up to date" in p.sh("dvc", "status")
    # a helper only EfficientNet imports: its stage, and nothing else, is stale
    with open(p.path / "avcache/extraction/extractors/efficientnet.py", "a") as f:
        f.write("# edited\n")
    p.sh("dvc", "repro", "lineage")
    status = p.sh("dvc", "status")
    assert "extract@visual:" in status and "lineage/extract/visual.json" in status
    assert "extract@audio" not in status and "train:" not in status
    # the cache reader: train and evaluate import it (neither was rerun before), extraction does not
    p.sh("git", "checkout", "-q", "avcache/extraction/extractors/efficientnet.py")
    with open(p.path / "avcache/contract/pair.py", "a") as f:
        f.write("# edited\n")
    p.sh("dvc", "repro", "lineage")
    status = p.sh("dvc", "status")
    assert "train:" in status and "evaluate:" in status and "extract@" not in status
    with open(p.path / "avcache/plots.py", "a") as f:  # evaluate's figures: evaluate alone
        f.write("# edited\n")
    p.sh("git", "checkout", "-q", "avcache/contract/pair.py")
    p.sh("dvc", "repro", "lineage")
    status = p.sh("dvc", "status")
    assert "evaluate:" in status and "train:" not in status and "extract@" not in status
    p.sh("git", "checkout", "-q", "avcache/plots.py")
    p.sh("dvc", "repro", "lineage")
    assert "up to date" in p.sh("dvc", "status")
    # one extractor's params re-run only that extractor; the model only train and evaluate
    p.params(extractors__efficientnet__reduction={"method": "pca", "dim": 4})
    assert "lineage:" in p.sh("dvc", "status")  # lineage/extract/visual.json holds the options
    p.sh("dvc", "repro", "lineage")
    status = p.sh("dvc", "status")
    assert "extract@visual:" in status and "extract@audio" not in status
    p.sh("git", "checkout", "-q", "params.yaml")
    p.sh("dvc", "repro", "lineage")
    p.params(model="dmrn")
    status = p.sh("dvc", "status")
    assert "train:" in status and "extract@" not in status
    p.sh("git", "checkout", "-q", "params.yaml")
    assert "up to date" in p.sh("dvc", "status")


@needs_dvc
def test_card_commands_select_caches_extract_once_and_compare(after_other_pair):
    """`dvc exp run -S audio=... -S visual=...` extracts a new pair once; switching back extracts nothing."""
    p, out = after_other_pair  # `dvc exp run -n other-pair -S audio=wav2vec2 -S visual=maskformer`
    # lineage reruns on every change of `audio` / `visual` (its params: it checks they are registered)
    assert p.ran(out) == ["lineage", "extract@audio", "extract@visual", "train", "evaluate", "attention"]
    assert read_provenance(p.path / "features/audio/wav2vec2.h5")["extractor"] == "wav2vec2"
    why = (p.path / "results/attention/README.txt").read_text()  # MaskFormer: query groups, no grid
    assert "regions are not places in the frame" in why and not list((p.path / "results/attention").glob("*.png"))
    out = p.sh("dvc", "exp", "run", "-n", "back", "-S", "audio=musicnn", "-S", "visual=efficientnet")
    assert p.ran(out) == ["lineage"]  # every other stage restored from DVC's run-cache: nothing extracted or trained
    assert "Stage 'extract@audio' is cached - skipping run" in out
    out = p.sh(
        "dvc", "exp", "run", "-n", "again", "-S", "audio=wav2vec2", "-S", "visual=maskformer", "-S", "model=dmrn"
    )
    assert p.ran(out) == ["lineage", "train", "evaluate", "attention"]
    diff = p.sh("dvc", "metrics", "diff", "other-pair", "again", "--all", "--json")
    keys = json.loads(diff)["results/metrics.json"]
    assert {"test.acc", "test.macro_f1", "test.auc_macro_ovr", "val.acc", "test.acc_std"} <= set(keys)
    plots = p.sh("dvc", "plots", "diff", "other-pair", "again", "--json", "--split")
    assert "dvclive/plots/metrics/seed0/val/acc.tsv" in plots and "results/confusion.csv" in plots
    # the side-by-side report reads what the experiments wrote
    p.sh(sys.executable, "-m", "avcache", "report", "other-pair", "again", "--out", "report.md")
    report = (p.path / "report.md").read_text()
    a = json.loads(p.sh("dvc", "metrics", "show", "--json"))  # the workspace holds 'again'
    acc = list(a.values())[0]["data"]["results/metrics.json"]["data"]["test"]
    assert f"{acc['acc']:.4f} ± {acc['acc_std']:.4f}" in report
    assert "| other-pair |" in report and "| again |" in report and "dmrn" in report
    w2v = read_provenance(p.path / "features/audio/wav2vec2.h5")["weights_sha256"]
    assert w2v in report and (p.path / "report_files/confusion_matrices.png").is_file()
    p.sh(sys.executable, "-m", "avcache", "report", "--out", "report.html")
    html = (p.path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<strong>" in html and "other-pair" in html
    # an extractor whose weights cannot be had stops at once, saying what to set
    r = subprocess.run(
        ["dvc", "exp", "run", "-S", "audio=vggish"], cwd=p.path, env=p.env, capture_output=True, text=True
    )
    assert r.returncode != 0
    assert "set extractors.vggish.handle to that folder" in r.stdout + r.stderr
    assert not (p.path / "features/audio/vggish.h5").exists()


def _reflinks_work(folder):
    """Whether this filesystem clones files (DVC then prefers reflinks to hardlinks)."""
    import fcntl

    a, b = folder / ".reflink-a", folder / ".reflink-b"
    a.write_bytes(b"x" * 4096)
    try:
        with open(a, "rb") as src, open(b, "wb") as dst:
            fcntl.ioctl(dst.fileno(), 0x40049409, src.fileno())  # FICLONE
        return True
    except OSError:
        return False
    finally:
        a.unlink()
        b.unlink(missing_ok=True)


@needs_dvc
def test_a_lab_extracts_once_and_shares_through_a_remote(after_other_pair, tmp_path):
    """Extract in one clone, push; a fresh clone pulls, is up to date, and trains with no extraction,
    even for a configuration it never ran (restored from the remote's run history)."""
    p, _ = after_other_pair  # the lab also ran an experiment with wav2vec2 and MaskFormer here
    p.sh("git", "checkout", "-q", "--", ".")  # back to the committed configuration
    # the experiment's outputs stay in DVC's cache, not in the workspace (nor in the commit below)
    p.sh("git", "clean", "-fdq", "features", "results")
    p.sh("dvc", "checkout", "-f")
    assert "up to date" in p.sh("dvc", "status")
    p.sh("dvc", "remote", "add", "--default", "lab", str(tmp_path / "lab-remote"))
    p.commit("the lab's remote")
    assert "files transferred" in p.sh(sys.executable, "-m", "avcache", "share", "push")
    clone = Project(tmp_path / "clone")
    p.sh("git", "clone", "-q", str(p.path), str(clone.path))
    clone.sh(sys.executable, "-m", "avcache", "share", "pull")
    assert "up to date" in clone.sh("dvc", "status")
    cache = clone.path / "features/visual/efficientnet.h5"
    assert not os.access(cache, os.W_OK) or os.geteuid() == 0  # DVC protects linked cache files
    assert cache.stat().st_mode & 0o222 == 0
    if not _reflinks_work(clone.path):  # no second copy: the workspace file is the cache's
        assert cache.stat().st_ino in {f.stat().st_ino for f in (clone.path / ".dvc/cache").rglob("*") if f.is_file()}
    out = clone.sh("dvc", "exp", "run", "-S", "model=dmrn")
    assert clone.ran(out) == ["train", "evaluate", "attention"]
    clone.sh("git", "checkout", "-q", "--", "params.yaml")  # the committed model again: the lab's experiment
    out = clone.sh("dvc", "exp", "run", "--pull", "-S", "audio=wav2vec2", "-S", "visual=maskformer")
    assert clone.ran(out) == ["lineage"] and "Stage 'extract@visual' is cached - skipping run" in out


@needs_dvc
def test_a_clip_dataset_runs_through_the_same_stages(project):
    """The card's clip-classification command: the clip demo through dataset, extraction (clips of
    1-5 s padded to the longest), the fold protocol and its metrics; PCA asks for the heads' own."""
    p = project
    clip = [
        "-S",
        "audio=musicnn",
        "-S",
        "visual=efficientnet",
        "-S",
        "dataset.format=csv",
        "-S",
        "dataset.root=data/clip_demo",
        "-S",
        "dataset.videos=data/clip_demo",
        "-S",
        "model=mlp",
        "-S",
        "models.mlp.max_epochs=30",
    ]
    r = subprocess.run(["dvc", "exp", "run", *clip], cwd=p.path, env=p.env, capture_output=True, text=True)
    assert r.returncode != 0  # the fixture's EfficientNet cache is PCA-reduced: no training split to fit on
    assert p.ran(r.stdout + r.stderr)[:2] == ["dataset", "extract@audio"]  # kept for the next run
    assert "extractors.efficientnet.reduction is 'pca'" in r.stdout + r.stderr
    assert "the clip head's `pca` option" in r.stdout + r.stderr
    out = p.sh("dvc", "exp", "run", "-n", "clips", *clip, "-S", "extractors.efficientnet.reduction.method=mean")
    # an extractor's options changed: lineage rewrites lineage/extract/visual.json; the audio cache is kept
    assert p.ran(out) == ["lineage", "extract@visual", "train", "evaluate", "attention"]
    ds = read_dataset(p.path / "features/dataset.h5")
    assert ds.kind == "clips" and len(ds.video_ids) == 20 and ds.seconds.min() >= 1
    with h5py.File(p.path / "features/audio/musicnn.h5") as f:
        assert f["features"].shape == (20, ds.max_seconds, 192)
    metrics = json.loads((p.path / "results/metrics.json").read_text())
    assert metrics["task"] == "clips" and metrics["model"] == "mlp" and metrics["test_clips"] == 20
    assert set(metrics["per_fold"]) == {"1", "2", "3", "4", "5"} and 0 <= metrics["test"]["acc"] <= 1
    assert "README.txt" in os.listdir(p.path / "results/attention")  # no maps for clip datasets
    assert "clips" in p.sh("dvc", "exp", "show", "--csv")
