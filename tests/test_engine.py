"""Engines, devices and precision: the pipelined engine against the serial one, real decode
worker processes, the device checks, and bf16 against fp32 on the shared clips."""

import json

import numpy as np
import pytest
from helpers import BENTO, DOG, REPO, bf16_close_to_fp32, save_tiny_wav2vec2, vgg19_bf16_cosine

from avcache.contract.cache import read_provenance
from avcache.contract.params import ParamsError, from_params
from avcache.extraction import engine, extractors
from avcache.extraction import stage as run
from avcache.extraction.extractors import DeviceError
from avcache.extraction.reduce import pool_seconds

VISUAL = {"frames_per_second": 1, "reduction": {"method": "pca", "dim": 16}}


@pytest.mark.slow
def test_pipelined_engine_publishes_the_serial_engines_bytes(mixed, tmp_path):
    opts = {"frames_per_second": 2, "reduction": {"method": "pca", "dim": 8}}
    serial = run.run(
        "visual",
        "efficientnet",
        opts,
        mixed,
        mixed.videos,
        tmp_path / "s" / "e.h5",
        progress=False,
        device="cpu",
        decode_workers=0,
    )
    piped = run.run(
        "visual",
        "efficientnet",
        opts,
        mixed,
        mixed.videos,
        tmp_path / "p" / "e.h5",
        progress=False,
        device="cpu",
        decode_workers=2,
    )
    assert serial.read_bytes() == piped.read_bytes()
    report = (tmp_path / "s" / "e.report.json").read_text()
    assert report == (tmp_path / "p" / "e.report.json").read_text()
    failed = {f["video"] for f in json.loads(report)["failed"]}
    assert failed == {"missing", "empty"} and mixed.video_ids[-1] == mixed.video_ids[2]
    prov = read_provenance(piped)
    assert prov["device"] == "cpu" and prov["precision"] == "fp32"
    assert not any("engine" in k or "worker" in k for k in prov)  # nothing engine-specific


def test_decode_workers_are_clean_processes_with_the_portable_kernels():
    import torch  # noqa: F401  the parent has the frameworks loaded; the workers must not

    pool = engine.decode_pool(1)
    try:
        assert pool.submit(engine.worker_modules).result() == []
        import os

        assert pool.submit(os.getenv, "ONEDNN_MAX_CPU_ISA").result() == "AVX2"
        decoded = pool.submit(engine.decode, _Fps1().decoder(), DOG).result()
        assert isinstance(decoded, engine.Decoded) and decoded.clip.images.shape == (10, 224, 224, 3)
        assert pool.submit(engine.worker_modules).result() == []  # decoding imported no framework
        failed = pool.submit(engine.decode, _Fps1().decoder(), DOG.parent / "nope.mp4").result()
        assert isinstance(failed, engine.Failed) and failed.reason.endswith("nope.mp4: file not found")
    finally:
        pool.shutdown()


class _Fps1:
    """What a visual extractor's decoder needs, without loading a model."""

    frames_per_second, image_size, fit = 1, (224, 224), "stretch"

    def decoder(self):
        from avcache.extraction.extractors.base import VisualExtractor

        return VisualExtractor.decoder(self)


@pytest.mark.slow
def test_a_crash_in_the_model_stops_naming_the_video_with_decode_workers(mixed, tmp_path, monkeypatch):
    from avcache.extraction.extractors.efficientnet import EfficientNet

    real = EfficientNet.embed

    def embed(self, images):
        embed.calls += 1
        if embed.calls == 4:
            raise RuntimeError("CUDA error: an illegal memory access")
        return real(self, images)

    embed.calls = 0
    monkeypatch.setattr(EfficientNet, "embed", embed)
    vid = mixed.video_ids[3]
    with pytest.raises(run.StageError, match=rf"video {vid} \(.*{vid}.mp4\): RuntimeError: CUDA error"):
        run.run(
            "visual",
            "efficientnet",
            VISUAL,
            mixed,
            mixed.videos,
            tmp_path / "e.h5",
            progress=False,
            device="cpu",
            decode_workers=2,
        )
    rows = sorted(int(p.stem) for p in tmp_path.glob(".e.work-*/rows/*.npz"))
    assert rows == [0, 1, 2, 9]  # the three before it, in order, and row 9 (video 2 listed again)


@pytest.mark.slow
def test_one_thread_gives_the_bits_of_two():
    """oneDNN's single-thread kernels differ in the last bits (Lite0: up to 4e-5) from 2, 3 or 4
    threads, which agree; a 1-CPU Ray actor or a 1-core machine computes with 2 threads."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = extractors.create("efficientnet", {"frames_per_second": 1}, "cpu")
        assert torch.get_num_threads() == 2
        frames = one.decode(DOG)
        a = one.embed(frames.images)
        torch.set_num_threads(4)
        assert np.array_equal(a, one.embed(frames.images))
    finally:
        torch.set_num_threads(before)


# --- devices and precision ---------------------------------------------------------------


def test_extract_params_name_the_bad_key():
    from avcache.extraction.stage import ExtractParams

    p = from_params(ExtractParams, {"device": "cuda:1", "engine": "ray", "ray": {"workers": 2}}, "extract")
    assert p.ray.workers == 2 and p.ray.address is None
    with pytest.raises(ParamsError, match=r"extract.device must be auto \| cpu \| cuda \| cuda:N, got 'gpu'"):
        from_params(ExtractParams, {"device": "gpu"}, "extract")
    with pytest.raises(ParamsError, match="extract.precision must be 'fp32' | 'bf16' | 'fp16'"):
        from_params(ExtractParams, {"precision": "int8"}, "extract")
    with pytest.raises(
        ParamsError, match="extract.decode_workers must be auto, 0 .serial. or a number of processes, got 'many'"
    ):
        from_params(ExtractParams, {"decode_workers": "many"}, "extract")
    assert engine.decode_workers(from_params(ExtractParams, {}, "extract").decode_workers) >= 1  # auto: at least one
    with pytest.raises(ParamsError, match=r"extract.ray: unknown key\(s\) \['adress'\]"):
        from_params(ExtractParams, {"ray": {"adress": "auto"}}, "extract")


def cuda_present():
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif("cuda_present()")
@pytest.mark.parametrize(
    "name, framework", [("efficientnet", "PyTorch"), pytest.param("musicnn", "TensorFlow", marks=pytest.mark.slow)]
)
def test_cuda_without_a_gpu_stops_with_what_to_do(name, framework, demo_ds, tmp_path):
    with pytest.raises(
        DeviceError,
        match=rf"extract.device is 'cuda' but CUDA is not available here \(no CUDA device is visible "
        rf"to {framework}: .*use cpu or auto",
    ):
        run.run(
            extractors.get(name).modality,
            name,
            {},
            demo_ds,
            demo_ds.videos,
            tmp_path / "x.h5",
            progress=False,
            device="cuda",
        )
    assert not list(tmp_path.iterdir())  # stopped before any work: nothing computed on the CPU
    with pytest.raises(DeviceError, match="'cuda:1' but CUDA is not available here"):
        extractors.create(name, {}, device="cuda:1")
    assert extractors.create("efficientnet", {}, device="auto").runtime()["device"] == "cpu"


def test_graph_models_refuse_a_precision_they_cannot_compute_in():
    with pytest.raises(
        DeviceError,
        match="musicnn: extract.precision 'bf16' is not available: musicnn's "
        "TF1 graph is built in float32.*Set extract.precision: fp32",
    ):
        extractors.create("musicnn", {}, precision="bf16")


@pytest.mark.slow
def test_bf16_features_stay_close_to_fp32_on_the_shared_clips():
    """bf16 autocast (8-bit mantissa) over EfficientNet-Lite0's ~50 layers: measured per-second
    row cosine 0.9918 (min) on the dog clip and 0.9984 on the bento clip at 1 frame/s; the floor 0.98 leaves room
    for other CPUs' bf16 kernels while still failing on anything broken (wrong scaling, channel
    order or layer give cosines far below 0.9)."""
    fp32 = extractors.create("efficientnet", {"frames_per_second": 1}, "cpu", "fp32")
    bf16 = extractors.create("efficientnet", {"frames_per_second": 1}, "cpu", "bf16")
    assert bf16.runtime() == {"device": "cpu", "precision": "bf16"}
    for clip in (DOG, BENTO):
        frames = fp32.decode(clip)
        a = pool_seconds(*fp32(frames)).reshape(10, -1)
        b = pool_seconds(*bf16(frames)).reshape(10, -1)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        print(f"{clip.name}: bf16 vs fp32 per-row cosine min {cos.min():.5f} mean {cos.mean():.5f}")
        assert cos.min() >= 0.98, clip.name
        assert not np.array_equal(a, b)  # bf16 really ran


@pytest.mark.slow
def test_plan_prints_frames_flops_sizes_and_time(demo_ds, tmp_path, monkeypatch, capsys):
    from avcache.contract.dataset import write_dataset
    from avcache.extraction import plan

    write_dataset(demo_ds, tmp_path / "dataset.h5")
    (tmp_path / "params.yaml").write_text(
        "visual: efficientnet\nextract: {device: cpu}\nextractors:\n  efficientnet:\n"
        "    frames_per_second: 1\n    reduction: {method: pca, dim: 16}\n"
    )
    monkeypatch.chdir(tmp_path)
    plan.main(["visual", "--dataset", "dataset.h5", "--time", "1"])
    out = capsys.readouterr().out
    assert "visual/efficientnet: 12 videos (12 files)" in out and "frames: 120 (1/s at 224x224)" in out
    per_video = float(out.split("GFLOP (")[1].split(" GFLOP per video")[0])
    assert 7 < per_video < 8.5, out  # Lite0: 0.39 G multiply-adds per frame, 10 frames, counted x2
    assert "measured (torch flop counter)" in out
    assert "cache: 378 kB (12 x [10, 7, 7, 16] float32)" in out and "work folder: 30.1 MB" in out
    assert "serial" in out and "WARNING" not in out


@pytest.mark.slow
def test_plan_without_the_videos_still_counts_flops_sizes_and_the_ray_time(tiny_demo, tmp_path, monkeypatch, capsys):
    """The dataset file was built where the videos are; here they are not: FLOPs, sizes and
    times come from synthetic clips (before: frames only), with the spread of the timed videos
    and a Ray estimate."""
    import re
    import shutil

    from helpers import make_dataset

    from avcache.contract.dataset import write_dataset
    from avcache.extraction import plan

    write_dataset(make_dataset(tmp_path / "elsewhere", tiny_demo[0], {}), tmp_path / "dataset.h5")
    shutil.rmtree(tmp_path / "elsewhere")
    (tmp_path / "params.yaml").write_text(
        "visual: efficientnet\nextract: {device: cpu, ray: {decode_workers: 1}}\nextractors:\n  efficientnet:\n"
        "    frames_per_second: 1\n    reduction: {method: pca, dim: 16}\n"
    )
    monkeypatch.chdir(tmp_path)
    plan.main(["visual", "--dataset", "dataset.h5", "--time", "2", "--actors", "3"])
    out = capsys.readouterr().out
    assert "no video of the dataset found" in out and "timing 3 synthetic demo clips" in out
    per_video = float(out.split("GFLOP (")[1].split(" GFLOP per video")[0])
    assert 7 < per_video < 8.5, out  # as measured on real videos (test above)
    assert "cache: 189 kB (6 x [10, 7, 7, 16] float32)" in out and "work folder: 15.1 MB" in out
    d, dlo, dhi, m, mlo, mhi = map(
        float,
        re.search(r"decode ([\d.]+) s \(([\d.]+)-([\d.]+)\) \+ model ([\d.]+) s \(([\d.]+)-([\d.]+)\)", out).groups(),
    )
    assert dlo <= d <= dhi and mlo <= m <= mhi
    rate = float(re.search(r"Ray engine: ([\d.]+) videos/s per actor \(1 decode worker,", out).group(1))
    assert rate == pytest.approx(1 / max(d, m), rel=0.1) and "x 3 actors -> about" in out


def test_plan_without_a_dataset_file_reads_a_clip_dataset_as_the_dataset_stage_does(tmp_path, monkeypatch, capsys):
    """No dataset file yet: plan loads params.yaml `dataset` in its format (here the clip CSV)."""
    from avcache.datasets.demo import generate_clips
    from avcache.extraction import plan

    generate_clips(tmp_path / "cd", clips=6, classes=2, folds=2, max_seconds=2, progress=False)
    (tmp_path / "params.yaml").write_text(
        "audio: musicnn\nvisual: efficientnet\nextractors: {musicnn: {}, efficientnet: {}}\n"
        "dataset: {format: csv, root: cd, videos: cd, max_seconds: 10}\n"
    )
    monkeypatch.chdir(tmp_path)
    plan.main(["--dataset", "missing.h5", "--time", "0"])
    out = capsys.readouterr().out
    assert "dataset: 6 videos in cd;" in out
    assert "audio/musicnn: 6 videos (6 files)" in out and "visual/efficientnet: 6 videos (6 files)" in out
    assert out.count("--time 0: no model loaded") == 2


VGG19_BF16 = (
    f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); from helpers import vgg19_bf16_cosine; "
    "print('min cosine', vgg19_bf16_cosine(sys.argv[1]))"
)


@pytest.mark.slow
@pytest.mark.subprocess  # where TensorFlow needs the native kernels (CPUs with bf16)
def test_keras_and_transformers_models_compute_in_bf16_when_asked(tmp_path):
    """The mixed dtype policy (Keras) and autocast (transformers) really change the arithmetic,
    and stay close to fp32, on models of the real interface with random weights. Where TensorFlow
    cannot run bf16 under the portable kernels (CPUs with bf16 instructions), the Keras extractor
    stops before any video saying how to run it, and runs under AVCACHE_KERNELS=native."""
    import os
    import subprocess
    import sys

    import keras

    from avcache import runtime

    rng = np.random.default_rng(0)
    fp32, bf16, cos = bf16_close_to_fp32(
        "wav2vec2",
        {"model": save_tiny_wav2vec2(tmp_path / "w2v2")},
        (0.1 * rng.standard_normal(16000)).astype(np.float32),
    )
    assert cos > 0.98 and bf16.net.dtype == fp32.net.dtype  # autocast: the weights stay fp32
    weights = tmp_path / "vgg19.weights.h5"
    keras.applications.VGG19(include_top=False, weights=None, input_shape=(64, 64, 3)).save_weights(weights)
    try:
        runtime.check_tf_bf16_on_cpu()
    except DeviceError as e:
        assert "AVCACHE_KERNELS=native" in str(e) and os.environ.get("AVCACHE_KERNELS", "portable") == "portable"
        with pytest.raises(DeviceError, match="AVCACHE_KERNELS=native"):
            vgg19_bf16_cosine(str(weights))
        env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")}
        done = subprocess.run(
            [sys.executable, "-c", VGG19_BF16, str(weights)],
            capture_output=True,
            text=True,
            env={**env, "AVCACHE_KERNELS": "native"},
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        cos = float(done.stdout.split("min cosine")[-1])
    else:
        cos = vgg19_bf16_cosine(str(weights))
    assert cos > 0.98, cos
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
