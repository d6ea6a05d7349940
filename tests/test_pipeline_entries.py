"""Each kind of registry entry through the real DVC stage: here an importer (the AVE release).

The extractors and the clip formats go through DVC in ``test_pipeline.py``; an importer writes
its cache by another path, and once wrote no report, so ``dvc repro`` failed on its declared output.
"""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml
from helpers import AVE, REPO

from avcache.contract.cache import read_features
from avcache.datasets.ave import load_ave

DVC = shutil.which("dvc", path=os.path.dirname(sys.executable))
pytestmark = [
    pytest.mark.skipif(DVC is None, reason="dvc not installed in this environment"),
    pytest.mark.dvc,
    pytest.mark.subprocess,
    pytest.mark.slow,
]


def _ave_subset(root, per_split=(4, 2, 2)):
    """The first videos of each real AVE split, with their real annotation lines."""
    root.mkdir()
    lines = (AVE / "Annotations.txt").read_text().splitlines()
    ids = {}
    for name, n in zip(("trainSet.txt", "valSet.txt", "testSet.txt"), per_split):
        kept = (AVE / name).read_text().splitlines()[:n]
        (root / name).write_text("\n".join(kept) + "\n")
        ids.update({line.split("&")[1]: line for line in kept})
    (root / "Annotations.txt").write_text(
        "\n".join([lines[0], *[line for line in lines[1:] if line.split("&")[1] in ids]]) + "\n"
    )


def _release_layout(folder, ds, rng):
    """Files in the AVE authors' release layout, agreeing row for row with ``ds``."""
    folder.mkdir()
    feats = {
        "audio_feature.h5": rng.normal(size=(len(ds.video_ids), 10, 128)).astype(np.float32),
        "visual_feature.h5": rng.normal(size=(len(ds.video_ids), 10, 7, 7, 512)).astype(np.float32),
        "labels.h5": ds.labels,
    }
    for name, x in feats.items():
        with h5py.File(folder / name, "w") as f:
            f.create_dataset("avadataset", data=x)
    for s in ("train", "val", "test"):
        with h5py.File(folder / f"{s}_order.h5", "w") as f:
            f.create_dataset("order", data=ds.indices(s)[::-1].astype(np.int64))  # any order of the split's rows
    return feats


def test_release_importers_run_through_dvc(tmp_path):
    """README "Using AVE": `-S audio=vggish_release -S visual=vgg19_release` reproduces through DVC."""
    work = tmp_path / "repo"
    shutil.copytree(REPO / "avcache", work / "avcache", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / ".dvc", work / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, work / name)
    _ave_subset(work / "ave")
    ds = load_ave(work / "ave")
    feats = _release_layout(work / "release", ds, np.random.default_rng(0))
    params = yaml.safe_load((work / "params.yaml").read_text())
    params.update(audio="vggish_release", visual="vgg19_release")
    params["dataset"].update(format="ave", root="ave", videos="release")
    params["train"].update(epochs=2, batch_size=2, seeds=[0])
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    env.update(DVC_NO_ANALYTICS="1", TF_CPP_MIN_LOG_LEVEL="2")

    def sh(*cmd):
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout + r.stderr

    sh("git", "init", "-q")
    sh("git", "add", "-A")
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")  # dvclive needs a commit
    out = sh("dvc", "repro", "evaluate")
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == ["lineage", "dataset", "extract@audio", "extract@visual", "train", "evaluate"]
    for modality, name, fname in (
        ("audio", "vggish_release", "audio_feature.h5"),
        ("visual", "vgg19_release", "visual_feature.h5"),
    ):
        cache = work / "features" / modality / f"{name}.h5"
        assert np.array_equal(read_features(cache, ds), feats[fname])
        report = json.loads(cache.with_name(f"{name}.report.json").read_text())
        assert (report["extractor"], report["videos"], report["failed"]) == (name, len(ds.video_ids), [])
    assert json.loads((work / "results/metrics.json").read_text())["test"]["acc"] >= 0
    assert "up to date" in sh("dvc", "status", "--with-deps", "evaluate")
