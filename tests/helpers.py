"""Plain helpers shared by the test modules: paths, media files made with PyAV, tiny models and
small projects. Fixtures live in conftest.py; test modules import these (``from helpers import
...``), never each other. Also imported by subprocesses (tests/ on their sys.path)."""

from pathlib import Path

from avcache.kernels import pin

pin()  # as every stage does, before numpy, torch or TensorFlow load

import shutil  # noqa: E402
from fractions import Fraction  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
AVE = SHARED / "data" / "ave"
CLIPS = SHARED / "data" / "clips"
DOG = CLIPS / "llp_BjCEufrlXm4_speech_dog_10s.mp4"
BENTO = CLIPS / "openl3_bento_1s.mp4"
FSDD = SHARED / "data" / "fsdd"
# real FSDD recordings: test takes (0-4) and train takes of all six speakers, 0.26-2.28 s (9_theo_16: 3 rows)
FSDD_SUBSET = ("0_george_0", "3_theo_12", "7_yweweler_45", "9_lucas_3", "9_theo_16", "5_jackson_30", "1_nicolas_2")


# --- signals and media files ---------------------------------------------------------------


def step_signal(sr: int, change_at: int = 5, seconds: int = 10):
    """Silence, then a loud two-tone signal from second ``change_at`` on."""
    t = np.arange(seconds * sr) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 1500 * t)
    return (x * (t >= change_at)).astype(np.float32)


def change_row(rows):
    """Index of the largest jump between consecutive per-second rows."""
    flat = rows.reshape(len(rows), -1)
    return int(np.argmax(np.linalg.norm(np.diff(flat, axis=0), axis=1))) + 1


def write_seconds_video(path, colours, fps=25, sr=16000):
    """An MP4 whose frame colour is colours[s] and whose tone is 200 + 100 s Hz during second s."""
    seconds = len(colours)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=fps, options={"qscale": "2"})
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = out.add_stream("aac", rate=sr, layout="mono")
        for k in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(
                np.broadcast_to(np.asarray(colours[k // fps], np.uint8), (48, 64, 3)).copy(), format="rgb24"
            )
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        t = np.arange(seconds * sr) / sr
        x = (0.5 * np.sin(2 * np.pi * (200 + 100 * np.floor(t)) * t)).astype(np.float32)
        for k in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(x[None, k : k + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sr, k, Fraction(1, sr)
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))


def colour(s):
    return (17 * (s % 15), 0, 240 - 16 * (s % 15))


def encode(
    path,
    seconds=10.0,
    fps=25,
    size=(64, 48),
    sr=16000,
    channels=1,
    video=True,
    audio=True,
    pts=None,
    rotation=None,
    faststart=False,
    amplitude=0.4,
):
    """An MP4 whose frame colour (``colour(s)``) and tone (300 + 100 s Hz) change every second s,
    with a white stripe on the left of every frame to show its orientation (``amplitude`` 0: the
    audio track is digital silence)."""
    opts = {"movflags": "faststart"} if faststart else {}
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    with av.open(str(path), "w", format="mp4", options=opts) as out:
        if video:  # every stream is added before the first packet is written
            vs = out.add_stream("mpeg4", rate=fps if pts is None else 1000, options={"qscale": "2"})
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
            if rotation:
                vs.set_display_rotation(rotation)
        if audio:
            aus = out.add_stream("aac", rate=sr, layout=layout)
        if video:
            stamps = pts if pts is not None else [k / fps for k in range(int(seconds * fps))]
            for t in stamps:
                img = np.zeros((size[1], size[0], 3), np.uint8)
                img[:] = colour(int(t))
                img[:, : size[0] // 4] = 255
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
                out.mux(vs.encode(frame))
            out.mux(vs.encode(None))
        if audio:
            t = np.arange(int(seconds * sr)) / sr
            x = amplitude * np.sin(2 * np.pi * (300 + 100 * np.floor(t)) * t)
            planes = np.stack([x * (c + 1) / channels for c in range(channels)]).astype(np.float32)
            for k in range(0, planes.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(planes[:, k : k + 1024]), format="fltp", layout=layout
                )
                frame.sample_rate, frame.pts, frame.time_base = sr, k, Fraction(1, sr)
                out.mux(aus.encode(frame))
            out.mux(aus.encode(None))
    return path


def remux(src, dst, fmt=None, streams=("video", "audio")):
    """The same packets in another container."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt) as o:
        pairs = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type in streams}
        for packet in i.demux():
            if packet.stream.index in pairs and packet.dts is not None:
                packet.stream = pairs[packet.stream.index]
                o.mux(packet)
    return dst


def dominant_hz(x, sr=16000):
    return np.fft.rfftfreq(len(x), 1 / sr)[np.abs(np.fft.rfft(x)).argmax()]


# --- AVE-format folders ----------------------------------------------------------------------


def make_dataset(root, good_dir, bad):
    """AVE-format folder: 6 good demo videos plus the given bad files, all in the train split."""
    from avcache.datasets.ave import load_ave

    ann = (good_dir / "Annotations.txt").read_text().splitlines()[:6]
    ids = [line.split("&")[1] for line in ann] + list(bad)
    (root / "AVE").mkdir(parents=True)
    for vid in ids[:6]:
        shutil.copy(good_dir / "AVE" / f"{vid}.mp4", root / "AVE" / f"{vid}.mp4")
    for vid, make in bad.items():
        make(root / "AVE" / f"{vid}.mp4")
    cls = ann[0].split("&")[0]
    lines = ann + [f"{cls}&{vid}&good&0&10" for vid in bad]
    (root / "Annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "trainSet.txt").write_text("\n".join(lines) + "\n")
    (root / "valSet.txt").write_text("")
    (root / "testSet.txt").write_text("")
    return load_ave(root, videos=str(root / "AVE"))


def fsdd_subset(root, names=FSDD_SUBSET):
    """A copy of some real FSDD recordings in the dataset's own layout (``root/recordings/``)."""
    (root / "recordings").mkdir(parents=True)
    for name in names:
        shutil.copy(FSDD / "recordings" / f"{name}.wav", root / "recordings" / f"{name}.wav")
    return root


def add_duplicate(ds_root, vid):
    """List ``vid`` a second time under another class, as AVE does for a few videos."""
    from avcache.datasets.ave import load_ave

    line = f"Other&{vid}&good&0&10\n"
    for name in ("Annotations.txt", "trainSet.txt"):
        with open(ds_root / name, "a") as f:
            f.write(line)
    return load_ave(ds_root, videos=str(ds_root / "AVE"))


# --- a small training project: dataset and caches whose labels need both modalities ----------

DATASET, AUDIO, VISUAL = "features/dataset.h5", "features/audio/fa.h5", "features/visual/fv.h5"
SMALL = {"hidden_dim": 16, "hidden_size": 32}

P_CUE = 0.8  # 38% background: at 62% the reference loss collapses onto "all background"

PARAMS = (
    "audio: fa\nvisual: fv\nmodel: av_att\nmodels: {av_att: {hidden_dim: 16, hidden_size: 32}}\n"
    "train: {epochs: 15, batch_size: 8, seeds: [0, 1]}\n"
)
STAGE_ARGS = ["--dataset", DATASET, "--audio", AUDIO, "--visual", VISUAL, "--models", "models"]


def make_project(root, n=60, seed=0):
    """A small dataset + caches whose labels need both modalities (event = audio cue AND visual cue)."""
    from avcache.contract.cache import CacheWriter
    from avcache.contract.dataset import AveDataset, write_dataset

    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 2, n)
    heard = rng.random((n, 10)) < P_CUE
    seen = rng.random((n, 10)) < P_CUE
    audio = rng.normal(0, 0.3, (n, 10, 8)).astype(np.float32)
    visual = rng.normal(0, 0.3, (n, 10, 2, 2, 6)).astype(np.float32)
    for i in range(n):
        audio[i, heard[i], cls[i]] += 2
        visual[i, seen[i], rng.integers(0, 2), rng.integers(0, 2), cls[i]] += 3
    event = heard & seen
    labels = np.zeros((n, 10, 3), np.uint8)
    labels[..., 2] = ~event
    labels[np.arange(n)[:, None], np.arange(10), np.where(event, cls[:, None], 2)] = 1
    split = np.array([0] * (n - 20) + [1] * 10 + [2] * 10, np.int8)
    ds = AveDataset([f"v{i}" for i in range(n)], ["a", "b"], labels, split, source="synthetic")
    write_dataset(ds, root / DATASET)
    for path, name, x in ((AUDIO, "fa", audio), (VISUAL, "fv", visual)):
        with CacheWriter(
            root / path, ds.video_ids, x.shape[1:], {"extractor": name, "name": name, "code_sha256": "x"}
        ) as w:
            for i, row in enumerate(x):
                w.write(i, row)
    return ds


def clip_project(root, n=90, classes=3, folds=5, multi_label=False, seed=0, heard=None, seen=None):
    """Clips of 1-4 s, sources of 3 clips in one fold; the class shows in audio dims and a visual region
    (only the classes in ``heard`` / ``seen`` when given)."""
    from avcache.contract.cache import CacheWriter
    from avcache.contract.dataset import ClipDataset, write_dataset

    rng = np.random.default_rng(seed)
    sources = n // 3
    src_class = rng.integers(0, classes, sources)
    src_fold = rng.permutation(np.arange(sources) % folds) + 1
    cls = np.repeat(src_class, 3)
    seconds = rng.integers(1, 5, n)
    labels = np.eye(classes, dtype=np.uint8)[cls]
    if multi_label:
        extra = rng.random(n) < 0.3
        labels[extra, (cls[extra] + 1) % classes] = 1
    audio = rng.normal(0, 1, (n, 4, 6)).astype(np.float32)
    visual = rng.normal(0, 1, (n, 4, 2, 2, 5)).astype(np.float32)
    for i in range(n):
        for k in np.flatnonzero(labels[i]):
            if heard is None or k in heard:
                audio[i, : seconds[i], k] += 1.5
            if seen is None or k in seen:
                visual[i, : seconds[i], 0, 1, k] += 3
        audio[i, seconds[i] :] = visual[i, seconds[i] :] = 0  # past the clip: nothing
    ids = [f"clips/c{i:03d}.mp4" for i in range(n)]
    ds = ClipDataset(
        ids,
        [f"class{k}" for k in range(classes)],
        labels,
        np.full(n, -1, np.int8),
        paths=ids,
        seconds=seconds,
        folds=np.repeat(src_fold, 3),
        groups=[f"s{i // 3}" for i in range(n)],
        multi_label=multi_label,
    )
    write_dataset(ds, root / "dataset.h5")
    for name, x in (("a", audio), ("v", visual)):
        with CacheWriter(root / f"{name}.h5", ids, x.shape[1:], {"name": name}) as w:
            for i, row in enumerate(x):
                w.write(i, row)
    return ds


# --- tiny random models of the real interfaces -------------------------------------------------


def save_tiny_wav2vec2(d):
    """A small random wav2vec 2.0 with base's conv kernels and strides, as a save_pretrained folder."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=192,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    Wav2Vec2Model(cfg).save_pretrained(d)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True).save_pretrained(d)
    return str(d)


def save_tiny_maskformer(d):
    """A small random MaskFormer with ADE20k's 150 classes, as a save_pretrained folder."""
    import torch
    from transformers import (
        DetrConfig,
        MaskFormerConfig,
        MaskFormerForInstanceSegmentation,
        MaskFormerImageProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    cfg = MaskFormerConfig(
        backbone_config=SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        decoder_config=DetrConfig(
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            num_queries=100,
        ),
        fpn_feature_size=32,
        mask_feature_size=32,
        id2label={i: f"c{i}" for i in range(150)},
    )
    MaskFormerForInstanceSegmentation(cfg).save_pretrained(d)
    MaskFormerImageProcessor().save_pretrained(d)
    return str(d)


# --- bf16 against fp32 ---------------------------------------------------------------------------


def bf16_close_to_fp32(name, options, x):
    """Embed ``x`` with ``name`` in fp32 and bf16: (fp32 extractor, bf16 extractor, min cosine)."""
    from avcache.extraction import extractors

    fp32 = extractors.create(name, options, "cpu", "fp32")
    bf16 = extractors.create(name, options, "cpu", "bf16")
    a, b = (np.asarray(e.embed(x)[0] if name == "wav2vec2" else e.embed(x)) for e in (fp32, bf16))
    assert b.dtype == np.float32 and not np.array_equal(a, b), name  # really computed otherwise
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return fp32, bf16, ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min()


def vgg19_bf16_cosine(weights: str) -> float:
    """min cosine of bf16 against fp32 VGG-19 features (``weights``: a Keras weights file)."""
    x = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    return bf16_close_to_fp32("vgg19", {"weights": weights, "input_size": 64, "frames_per_second": 1}, x)[2]


# --- copies of this repository running real DVC ----------------------------------------------


class Project:
    """A copy of this repository in a temporary folder, with git, running real `dvc` commands."""

    def __init__(self, path):
        import os
        import sys

        self.path = path
        self.env = {
            **os.environ,
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
            "DVC_NO_ANALYTICS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }

    def sh(self, *cmd, ok=True):
        import subprocess

        r = subprocess.run(cmd, cwd=self.path, env=self.env, capture_output=True, text=True)
        if ok:
            assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r.stdout + r.stderr

    def ran(self, out):
        return [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]

    def params(self, **changes):
        import yaml

        params = yaml.safe_load((self.path / "params.yaml").read_text())
        for key, value in changes.items():
            node = params
            *parents, last = key.split("__")
            for k in parents:
                node = node[k]
            node[last] = value
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def commit(self, message):
        self.sh("git", "add", "-A")
        self.sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def copy_repo(path) -> Project:
    """This repository's source, params and pipeline copied to ``path``: no git, no outputs, no caches."""
    shutil.copytree(
        REPO,
        path,
        ignore=shutil.ignore_patterns(  # basenames: .dvc/cache is "cache"
            ".venv",
            ".git",
            "features",
            "data",
            "cache",
            "tmp",
            "dvc.lock",
            "__pycache__",
            "models",
            "results",
            "dvclive",
            "lineage",
            ".models.work",
            ".pytest_cache",
        ),
    )
    return Project(path)
