"""Nothing pulled from a shared remote (or found in a dataset) may run code or silently change results.

Each test plants one hostile or damaged input and checks what the user sees: one line naming the
file and what to do, never a traceback, and never the payload running (the payloads here only
create a marker file, which must not appear).
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from avcache.contract.cache import CacheWriter
from avcache.contract.dataset import Dataset, write_dataset

REPO = pathlib.Path(__file__).resolve().parent.parent
DATASET, AUDIO, VISUAL = "features/dataset.h5", "features/audio/fa.h5", "features/visual/fv.h5"
STAGE_ARGS = ["--dataset", DATASET, "--audio", AUDIO, "--visual", VISUAL, "--models", "models"]
SMALL = {"hidden_dim": 4, "hidden_size": 8}


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: what an ``os.system`` payload would do, harmlessly."""

    def __init__(self, marker):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def avcache(*args, cwd):
    """``python -m avcache <args>`` in ``cwd``: (exit code, stdout + stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "avcache", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    return p.returncode, (p.stdout + p.stderr).strip()


def one_line(out: str) -> str:
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return lines[0]


def make_project(root, n=24, seed=0, audio=None):
    """A small dataset, a pair of caches, one untrained checkpoint per seed and params.yaml."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 10, 3), np.uint8)
    labels[np.arange(n)[:, None], np.arange(10), rng.integers(0, 3, (n, 10))] = 1
    split = np.array([0] * (n - 8) + [1] * 4 + [2] * 4, np.int8)
    ds = Dataset([f"v{i}" for i in range(n)], ["a", "b"], labels, split, source="synthetic")
    write_dataset(ds, root / DATASET)
    a = rng.normal(size=(n, 10, 8)).astype(np.float32) if audio is None else audio
    v = rng.normal(size=(n, 10, 2, 2, 6)).astype(np.float32)
    for path, name, x in ((AUDIO, "fa", a), (VISUAL, "fv", v)):
        with CacheWriter(
            root / path, ds.video_ids, x.shape[1:], {"extractor": name, "name": name, "code_sha256": "x"}
        ) as w:
            for i, row in enumerate(x):
                w.write(i, row)
    (root / "params.yaml").write_text(
        "audio: fa\nvisual: fv\nmodel: av_att\nmodels: {av_att: {hidden_dim: 4, hidden_size: 8}}\n"
        "train: {epochs: 1, batch_size: 8, seeds: [0], device: cpu}\n"
    )
    return ds


def save_models(root, summary=None):
    """``models/seed0.pt`` as the train stage saves it (``summary`` replaced when given) and training.json."""
    from avcache.localization.models import build, save_checkpoint

    shapes = {"audio_dim": 8, "visual_dim": 6, "regions": 4, "n_classes": 3}
    torch.manual_seed(0)
    real = {"seed": 0, "best_epoch": 0, "val_acc": 0.5, "stop_epoch": 0}
    caches = {
        m: {"path": p, "name": n, "extractor": n, "code_sha256": "x"}
        for m, p, n in (("audio", AUDIO, "fa"), ("visual", VISUAL, "fv"))
    }
    save_checkpoint(
        root / "models/seed0.pt",
        build("av_att", **shapes, **SMALL),
        "av_att",
        SMALL,
        shapes,
        recipe={"epochs": 1, "seeds": [0], "lr": 1e-3, "patience": None},
        caches=caches,
        summary=real if summary is None else summary,
    )
    training = {"model": "av_att", "options": SMALL, "caches": caches, "recipe": {}, "device": "cpu", "seeds": [real]}
    (root / "models/training.json").write_text(json.dumps(training))


# 1. Checkpoints that run code


def test_checkpoint_with_a_pickled_callable_is_refused(tmp_path):
    from avcache.localization.models import CheckpointError, load_checkpoint

    marker = tmp_path / "payload-ran"
    save_models(tmp_path, summary=Payload(marker))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "models/seed0.pt")
    assert not marker.exists()
    msg = one_line(str(e.value))
    assert str(tmp_path / "models/seed0.pt") in msg
    assert "objects other than tensors and plain data" in msg and "will not be loaded" in msg


def test_real_checkpoint_loads_without_pickle(tmp_path):
    """What the train stage saves is tensors and plain data: it loads under ``weights_only``."""
    from avcache.localization.models import load_checkpoint

    save_models(tmp_path)
    ck = torch.load(tmp_path / "models/seed0.pt", weights_only=True)
    assert ck["summary"]["val_acc"] == 0.5
    model, meta = load_checkpoint(tmp_path / "models/seed0.pt")
    assert meta["options"] == SMALL and model.lstm_audio.hidden_size == 4


@pytest.mark.parametrize("damage", ["payload", "truncated"])
def test_evaluate_stage_refuses_a_hostile_or_truncated_checkpoint_in_one_line(tmp_path, damage):
    make_project(tmp_path)
    marker = tmp_path / "payload-ran"
    save_models(tmp_path, summary=Payload(marker) if damage == "payload" else None)
    ck = tmp_path / "models/seed0.pt"
    if damage == "truncated":
        ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    rc, out = avcache("evaluate", *STAGE_ARGS, "--results", "results", cwd=tmp_path)
    assert rc != 0 and not marker.exists()
    line = one_line(out)
    assert line.startswith("evaluate: ") and "models/seed0.pt" in line, line
    if damage == "payload":
        assert "objects other than tensors and plain data" in line
    else:
        assert "cannot be read" in line and "truncated or corrupt" in line


def test_training_state_with_a_payload_is_not_unpickled(tmp_path, capsys):
    """A resumable seed's state file holding a payload is refused (the seed starts over), and
    a real state file resumes under ``weights_only``."""
    from avcache.localization import train

    make_project(tmp_path)
    data = train.load_data(tmp_path / DATASET, tmp_path / AUDIO, tmp_path / VISUAL)
    recipe = train.Recipe(epochs=2, batch_size=8, seeds=[0], device="cpu")
    state = tmp_path / "seed0.state.pt"
    train.train_one("av_att", SMALL, data, recipe, 0, progress=False, state_path=state)
    saved = torch.load(state, weights_only=True)  # tensors and plain data only
    assert saved["epoch"] == 1 and isinstance(saved["gen"], torch.Tensor)
    capsys.readouterr()
    _, s = train.train_one("av_att", SMALL, data, recipe, 0, progress=False, state_path=state)
    assert s["stop_epoch"] == 1 and "cannot resume" not in capsys.readouterr().out  # resumed: nothing to train
    marker = tmp_path / "payload-ran"
    torch.save({**saved, "history": Payload(marker)}, state)
    train.train_one("av_att", SMALL, data, recipe, 0, progress=False, state_path=state)
    out = capsys.readouterr().out
    assert not marker.exists()
    assert f"cannot resume from {state}" in out and "objects other than tensors and plain data" in out


@pytest.mark.parametrize("where", ["weights", "torch_home"])
def test_openl3_weights_file_with_a_payload_is_refused(tmp_path, monkeypatch, where):
    """``extractors.openl3.weights``, or the file in ``$TORCH_HOME/hub/checkpoints`` when it is not
    set, is read as tensors only, even where the environment turned torch's check off for fairseq
    (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``)."""
    torchopenl3 = pytest.importorskip("torchopenl3")
    from avcache.extraction.extractors.base import WeightsNotFound
    from avcache.extraction.extractors.openl3 import OpenL3

    net = torchopenl3.models.PytorchOpenl3(input_repr="mel128", content_type="env", embedding_size=512)
    marker, path = tmp_path / "payload-ran", tmp_path / "hub/checkpoints/torchopenl3_mel128_env_512.pth.tar"
    path.parent.mkdir(parents=True)
    torch.save({**net.state_dict(), "x": Payload(marker)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFound) as e:
        OpenL3(
            input_repr="mel128",
            content_type="env",
            embedding_size=512,
            weights=str(path) if where == "weights" else None,
        )
    assert not marker.exists()
    assert one_line(str(e.value)).startswith(f"openl3: {path}: contains objects other than tensors and plain data")
