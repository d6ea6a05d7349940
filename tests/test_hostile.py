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
from avcache.contract.dataset import AveDataset, ClipDataset, write_dataset

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


def hostile_project(root, n=24, seed=0, audio=None):
    """A small dataset, a pair of caches, one untrained checkpoint per seed and params.yaml."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 10, 3), np.uint8)
    labels[np.arange(n)[:, None], np.arange(10), rng.integers(0, 3, (n, 10))] = 1
    split = np.array([0] * (n - 8) + [1] * 4 + [2] * 4, np.int8)
    ds = AveDataset([f"v{i}" for i in range(n)], ["a", "b"], labels, split, source="synthetic")
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


@pytest.mark.subprocess
@pytest.mark.parametrize("damage", ["payload", "truncated"])
def test_evaluate_stage_refuses_a_hostile_or_truncated_checkpoint_in_one_line(tmp_path, damage):
    hostile_project(tmp_path)
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


def test_training_state_with_a_payload_is_not_unpickled(tmp_path, caplog):
    """A resumable seed's state file holding a payload is refused (the seed starts over), and
    a real state file resumes under ``weights_only``."""
    from avcache.localization import train

    hostile_project(tmp_path)
    data = train.load_data(tmp_path / DATASET, tmp_path / AUDIO, tmp_path / VISUAL)
    recipe = train.Recipe(epochs=2, batch_size=8, seeds=[0], device="cpu")
    state = tmp_path / "seed0.state.pt"
    train.train_one("av_att", SMALL, data, recipe, 0, progress=False, state_path=state)
    saved = torch.load(state, weights_only=True)  # tensors and plain data only
    assert saved["epoch"] == 1 and isinstance(saved["gen"], torch.Tensor)
    caplog.clear()
    _, s = train.train_one("av_att", SMALL, data, recipe, 0, progress=False, state_path=state)
    assert s["stop_epoch"] == 1 and "cannot resume" not in caplog.text  # resumed: nothing to train
    marker = tmp_path / "payload-ran"
    torch.save({**saved, "history": Payload(marker)}, state)
    train.train_one("av_att", SMALL, data, recipe, 0, progress=False, state_path=state)
    out = caplog.text
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


# 2. Caches without checksums


def write_cache(path, ids, rows, storage=None):
    from avcache.contract.cache import Storage

    with CacheWriter(path, ids, rows.shape[1:], {"extractor": "x", "layer": "l"}, storage or Storage()) as w:
        for i, r in enumerate(rows):
            w.write(i, r, {"source_seconds": 10.0 - i, "file": f"{ids[i]}.mp4"})
        w.save_state("reduction", {"mean": np.ones(3), "components": np.eye(3, dtype=np.float32)})
        w.set_valid(np.ones(len(ids), bool), "mask")


def ds_of(ids):
    return AveDataset(list(ids), ["a"], np.zeros((len(ids), 10, 2), np.uint8), np.zeros(len(ids), np.int8))


def flip(path, dataset, at=0.5):
    """Flip one byte inside the stored data of ``dataset`` (its first chunk)."""
    import h5py

    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
    offset = info.byte_offset + int(info.size * at)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def all_datasets(path):
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: found.__setitem__(name, obj.fletcher32) if isinstance(obj, h5py.Dataset) else None
        )
    return found


def test_every_dataset_of_a_cache_and_a_dataset_file_carries_a_checksum(tmp_path):
    from avcache.contract.cache import Storage, read_features

    ids = ["v1", "v2", "vidéo3"]
    rows = np.random.default_rng(0).normal(size=(3, 10, 4)).astype(np.float32)
    for k, storage in enumerate((Storage(), Storage("float16", "gzip"), Storage(compression="lzf"))):
        write_cache(tmp_path / f"c{k}.h5", ids, rows, storage)
        found = all_datasets(tmp_path / f"c{k}.h5")
        assert set(found) == {
            "features",
            "video_ids",
            "valid",
            "media/source_seconds",
            "media/file",
            "reduction/mean",
            "reduction/components",
        }
        assert all(found.values()), found
        got = read_features(tmp_path / f"c{k}.h5", ds_of(ids))
        assert np.array_equal(got, rows if storage.dtype == "float32" else rows.astype(np.float16).astype(np.float32))
    from avcache.contract.dataset import read_dataset

    ave = ds_of(ids)
    write_dataset(ave, tmp_path / "ave.h5")
    clips = ClipDataset(
        ids,
        ["a", "b"],
        np.zeros((3, 2), np.uint8),
        np.zeros(3, np.int8),
        paths=["a/1.wav", "b:2.wav", "ü.wav"],
        seconds=np.array([5, 5, 4]),
        folds=np.array([1, 2, 0]),
        groups=["g1", "g2", ""],
    )
    write_dataset(clips, tmp_path / "clips.h5")
    for name in ("ave.h5", "clips.h5"):
        found = all_datasets(tmp_path / name)
        assert all(found.values()) and "video_ids" in found, found
    back = read_dataset(tmp_path / "clips.h5")
    assert back.video_ids == ids and back.paths == clips.paths and back.groups == clips.groups
    assert back.class_names == ["a", "b"] and read_dataset(tmp_path / "ave.h5").class_names == ["a"]


@pytest.mark.parametrize("dataset", ["features", "video_ids", "valid"])
def test_a_flipped_byte_in_a_cache_is_refused_in_one_line(tmp_path, dataset):
    from avcache.contract.cache import CacheError, read_features, read_valid

    ids = [f"v{i}" for i in range(4)]
    path = tmp_path / "c.h5"
    write_cache(path, ids, np.random.default_rng(0).normal(size=(4, 10, 16)).astype(np.float32))
    flip(path, dataset)
    with pytest.raises(CacheError) as e:
        read_features(path, ds_of(ids))
        read_valid(path, ds_of(ids))
    line = one_line(str(e.value))
    assert line.startswith(f"{path}: corrupted (checksum mismatch") and f"'{dataset}'" in line
    assert f"dvc checkout --force {path}" in line and "make pull" in line


def test_a_flipped_byte_in_a_dataset_file_is_refused_in_one_line(tmp_path):
    from avcache.contract.dataset import DatasetError, read_dataset

    path = tmp_path / "dataset.h5"
    write_dataset(ds_of([f"v{i}" for i in range(4)]), path)
    flip(path, "labels")
    with pytest.raises(DatasetError) as e:
        read_dataset(path)
    line = one_line(str(e.value))
    assert line.startswith(f"{path}: corrupted (checksum mismatch") and "'labels'" in line
    assert f"dvc checkout --force {path}" in line


def test_a_truncated_cache_is_refused_in_one_line(tmp_path):
    from avcache.contract.cache import CacheError, read_features

    ids = ["v1", "v2"]
    path = tmp_path / "c.h5"
    write_cache(path, ids, np.ones((2, 10, 4), np.float32))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CacheError) as e:
        read_features(path, ds_of(ids))
    line = one_line(str(e.value))
    assert line.startswith(f"{path}: ") and "cannot be opened" in line and "dvc checkout --force" in line


def test_a_truncated_dataset_file_is_refused_in_one_line(tmp_path):
    from avcache.contract.dataset import DatasetError, read_dataset

    hostile_project(tmp_path)
    path = tmp_path / DATASET
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(DatasetError) as e:
        read_dataset(path)
    line = one_line(str(e.value))
    assert line.startswith(f"{path}: cannot be opened, it is truncated or not an HDF5 file (")
    assert f"dvc checkout --force {path}" in line


def test_non_finite_features_are_refused_naming_the_rows(tmp_path):
    from avcache.contract.cache import CacheError, read_features

    ids = [f"v{i}" for i in range(6)]
    rows = np.ones((6, 10, 4), np.float32)
    rows[2, 3, 1] = np.nan
    rows[5, 0, 0] = -np.inf
    path = tmp_path / "c.h5"
    write_cache(path, ids, rows)
    with pytest.raises(CacheError) as e:
        read_features(path, ds_of(ids))
    line = one_line(str(e.value))
    assert line.startswith(f"{path}: non-finite features (NaN or inf) in 2 rows: v2, v5")


def test_audio_and_visual_caches_swapped_are_refused_in_one_line(tmp_path):
    """By shape (a grid given as audio), and by the cache's own ``modality`` where shapes agree."""
    from avcache.contract.cache import CacheError
    from avcache.contract.pair import load_pair

    ds = hostile_project(tmp_path)
    with pytest.raises(CacheError) as e:
        load_pair(tmp_path / DATASET, tmp_path / VISUAL, tmp_path / AUDIO)
    line = one_line(str(e.value))
    assert line.startswith(f"{tmp_path / VISUAL}: a visual cache (24 x 10 x 2 x 2 x 6) given as the audio one; ")
    assert f"are the audio and visual caches swapped (the other is {tmp_path / AUDIO})?" in line
    flat = tmp_path / "features/visual/flat.h5"  # a visual cache without a grid: [N, 10, d], as audio is
    with CacheWriter(flat, ds.video_ids, (10, 6), {"name": "flat", "modality": "visual"}) as w:
        for i in range(len(ds.video_ids)):
            w.write(i, np.ones((10, 6), np.float32))
    with pytest.raises(CacheError, match=r"flat.h5: a visual cache \(24 x 10 x 6\) given as the audio one"):
        load_pair(tmp_path / DATASET, flat, tmp_path / VISUAL)
    assert load_pair(tmp_path / DATASET, tmp_path / AUDIO, flat).visual.shape == (24, 10, 1, 6)


def test_a_checkpoint_for_caches_of_another_width_is_refused_in_one_line(tmp_path):
    from avcache.contract.pair import load_pair
    from avcache.localization.models import CheckpointError, load_checkpoint

    hostile_project(tmp_path, audio=np.ones((24, 10, 5), np.float32))  # the checkpoint was trained on width 8
    save_models(tmp_path)
    pair = load_pair(tmp_path / DATASET, tmp_path / AUDIO, tmp_path / VISUAL)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "models/seed0.pt", shapes=pair.shapes, caches="these caches")
    line = one_line(str(e.value))
    assert line.startswith(f"{tmp_path / 'models/seed0.pt'}: trained on caches of other shapes than these caches")
    assert "(audio_dim 8 vs 5; checkpoint vs caches)" in line


@pytest.mark.subprocess
@pytest.mark.parametrize("damage", ["swapped", "width"])
def test_evaluate_stage_refuses_swapped_or_mismatched_caches_in_one_line(tmp_path, damage):
    hostile_project(tmp_path, audio=np.ones((24, 10, 5), np.float32) if damage == "width" else None)
    save_models(tmp_path)
    args = ["--dataset", DATASET, "--audio", VISUAL, "--visual", AUDIO] if damage == "swapped" else STAGE_ARGS[:6]
    rc, out = avcache("evaluate", *args, "--models", "models", "--results", "results", cwd=tmp_path)
    line = one_line(out)
    assert rc != 0 and line.startswith("evaluate: "), line
    if damage == "swapped":
        assert line.startswith(f"evaluate: {VISUAL}: a visual cache (24 x 10 x 2 x 2 x 6) given as the audio one")
    else:
        assert line.startswith("evaluate: models/seed0.pt: trained on caches of other shapes") and "8 vs 5" in line
    assert not (tmp_path / "results").exists()


@pytest.mark.subprocess
def test_train_stage_refuses_a_corrupted_cache_in_one_line(tmp_path):
    hostile_project(tmp_path)
    flip(tmp_path / AUDIO, "features")
    rc, out = avcache("train", *STAGE_ARGS, cwd=tmp_path)
    line = one_line(out.replace("\r", "\n"))
    assert rc != 0 and line.startswith(f"train: {AUDIO}: corrupted (checksum mismatch"), line
    assert not (tmp_path / "models").exists()


# 3. FFmpeg protocols

DOG = REPO.parent / "shared/data/clips/llp_BjCEufrlXm4_speech_dog_10s.mp4"
BENTO = REPO.parent / "shared/data/clips/openl3_bento_1s.mp4"


class Listener:
    """A loopback port that counts the connections made to it (and closes each at once)."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port, self.connections = self.sock.getsockname()[1], 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def listener():
    port = Listener()
    yield port
    port.close()


def test_protocol_paths_are_refused_before_any_connection(tmp_path, monkeypatch, listener):
    from avcache.extraction.stage import video_path
    from avcache.media import MediaError, load_audio, load_frames

    monkeypatch.chdir(tmp_path)
    for path in ("concat:/etc/hostname|/etc/hosts", f"http://127.0.0.1:{listener.port}/x.mp4", "pipe:0"):
        for load in (lambda p: load_audio(p, 16000), lambda p: load_frames(p, 1, (32, 32))):
            with pytest.raises(MediaError) as e:
                load(path)
            line = one_line(str(e.value))
            assert line.startswith(f"{pathlib.Path(path)}: not a local file") and "protocol" in line, line
        with pytest.raises(MediaError, match="not a local file"):  # a clip dataset's row, as extraction finds it
            video_path(".", "row", path)
    assert listener.connections == 0


def test_a_file_named_like_a_protocol_is_read_as_that_file(tmp_path, monkeypatch, listener):
    """A dataset folder can hold a file whose relative path reads as a protocol
    (``concat:<another file>``, ``http:/host:port/x.mp4``): what is decoded is that file itself."""
    import shutil

    from avcache.media import load_audio, load_frames

    monkeypatch.chdir(tmp_path)
    planted = [f"concat:{DOG}", f"http://127.0.0.1:{listener.port}/x.mp4", "a:b.mp4"]
    for name in planted:
        target = tmp_path / pathlib.Path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BENTO, target)
    for name in planted:
        assert load_audio(name, 16000).source_seconds < 1.2, name  # the 1-s file, not the 10-s one
        assert load_frames(name, 1, (32, 32)).source_seconds < 1.2, name
    assert listener.connections == 0


@pytest.mark.subprocess
def test_pipe_path_never_reads_stdin(tmp_path):
    """``pipe:0`` as a path (a file of that name in the folder) is that file, never standard input."""
    import shutil

    shutil.copy(BENTO, tmp_path / "pipe:0")
    code = "from avcache.media import load_audio; print(round(load_audio('pipe:0', 16000).source_seconds))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(DOG, "rb") as stdin:
        p = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert p.returncode == 0 and p.stdout.split() == ["1"], p.stdout + p.stderr  # not the 10-s clip on stdin


@pytest.mark.subprocess
def test_clip_probe_opens_local_files_only(tmp_path, monkeypatch, listener):
    from avcache.datasets.clips import probe_seconds

    monkeypatch.chdir(tmp_path)
    assert probe_seconds(pathlib.Path(f"concat:{DOG}")) is None  # not DOG's 10 s through the concat protocol
    assert probe_seconds(pathlib.Path(f"http://127.0.0.1:{listener.port}/x.mp4")) is None
    assert listener.connections == 0
    assert probe_seconds(pathlib.Path(os.path.relpath(BENTO))) == pytest.approx(1.1)


# 4. Corrupted or missing remote objects


def dvc(*args, cwd):
    exe = pathlib.Path(sys.executable).with_name("dvc")
    p = subprocess.run(
        [str(exe), *args], cwd=cwd, env={**os.environ, "DVC_NO_ANALYTICS": "1"}, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout.strip()


@pytest.fixture
def lab(tmp_path):
    """A DVC project whose remote was set by ``make remote``, with one pushed file."""
    import shutil

    if shutil.which("make") is None or not pathlib.Path(sys.executable).with_name("dvc").exists():
        pytest.skip("needs make and dvc")
    repo, remote, venv = tmp_path / "repo", tmp_path / "remote", tmp_path / "venv"
    repo.mkdir()
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/dvc").symlink_to(pathlib.Path(sys.executable).with_name("dvc"))
    dvc("init", "--no-scm", "-q", cwd=repo)
    shutil.copy(REPO / "Makefile", repo)
    # -o: the venv counts as set up (this test must not install anything)
    make = ["make", "-s", "-o", f"{venv}/.installed", f"VENV={venv}", f"REMOTE={remote}", "remote"]
    p = subprocess.run(make, cwd=repo, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert dvc("config", "remote.lab.verify", cwd=repo) == "true"
    assert dvc("config", "core.remote", cwd=repo) == "lab"
    (repo / "data.txt").write_text("features\n")
    dvc("add", "-q", "data.txt", cwd=repo)
    rc, out = avcache("share", "push", cwd=repo)
    assert rc == 0 and out.endswith("push: 1 file transferred"), out
    return repo, remote


@pytest.mark.subprocess
@pytest.mark.dvc
@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_pull_of_a_missing_or_corrupt_remote_object_is_one_line(lab, damage):
    import shutil

    repo, remote = lab
    (obj,) = [p for p in remote.rglob("*") if p.is_file()]
    if damage == "missing":
        obj.unlink()
    else:
        obj.chmod(0o644)
        obj.write_text("tampered\n")
    shutil.rmtree(repo / ".dvc/cache")
    (repo / "data.txt").unlink()
    rc, out = avcache("share", "pull", cwd=repo)
    line = one_line(out)
    assert rc != 0 and not (repo / "data.txt").exists()
    assert line.startswith("pull: data.txt could not be restored"), line
    assert "missing from the remote or failed its hash check" in line and "make push" in line
