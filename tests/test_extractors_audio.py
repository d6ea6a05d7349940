"""Audio extractors on small models of the real interface, exported or saved here and loaded by
the same code that loads the real weights; alignment checked on a signal that changes at 5 s."""

import numpy as np
import pytest
from helpers import change_row, save_tiny_wav2vec2, step_signal

from avcache.contract.cache import read_features, read_provenance
from avcache.extraction import extractors
from avcache.extraction import stage as run
from avcache.extraction.extractors import WeightsNotFound
from avcache.extraction.reduce import pool_seconds


def export_hub_model(path, hop_s, dims):
    """A SavedModel with VGGish's (dims=[128]) or YAMNet's (dims=[521, 1024]) call signature:
    a 16 kHz waveform in, one row per 0.96-s window out (YAMNet also returns its log-mel)."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self):
            self.proj = [tf.Variable(tf.random.stateless_normal([257, d], seed=[1, i])) for i, d in enumerate(dims)]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            frames = tf.signal.frame(waveform, 15360, int(hop_s * 16000), pad_end=len(dims) > 1)
            spec = tf.reduce_mean(tf.abs(tf.signal.stft(frames, 512, 512)), axis=1)  # [n, 257]
            outs = [tf.math.log1p(spec) @ p for p in self.proj]
            return outs[0] if len(outs) == 1 else (outs[0], outs[1], tf.math.log1p(spec))

    tf.saved_model.save(Tiny(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def vggish_dir(tmp_path_factory):
    return export_hub_model(tmp_path_factory.mktemp("hub") / "vggish", 0.96, [128])


@pytest.fixture(scope="module")
def yamnet_dir(tmp_path_factory):
    return export_hub_model(tmp_path_factory.mktemp("hub") / "yamnet", 0.48, [521, 1024])


@pytest.mark.slow
def test_vggish_per_second_rows_and_alignment(vggish_dir):
    ex = extractors.create("vggish", {"handle": vggish_dir})
    values, times = ex.embed(step_signal(16000))
    assert values.shape == (10, 128)  # ten 0.96-s windows in 10 s, one per second
    assert np.allclose(times, np.arange(10) * 0.96 + 0.48)
    rows = pool_seconds(values, times)
    assert all(np.array_equal(rows[0], rows[t]) for t in range(5))  # windows inside the silence
    assert change_row(rows) == 5


@pytest.mark.slow
def test_yamnet_embeddings_scores_and_pca_cache(yamnet_dir, demo20, tmp_path):
    ex = extractors.create("yamnet", {"handle": yamnet_dir})
    values, times = ex.embed(step_signal(16000))
    assert values.shape[1] == 1024 and np.allclose(np.diff(times), 0.48) and times.max() < 10
    assert change_row(pool_seconds(values, times)) == 5
    scores = extractors.create("yamnet", {"handle": yamnet_dir, "layer": "scores"})
    assert scores.embed(step_signal(16000))[0].shape[1] == 521
    out = run.run(
        "audio",
        "yamnet",
        {"handle": yamnet_dir, "reduction": {"method": "pca", "dim": 128}},
        demo20,
        demo20.videos,
        tmp_path / "yamnet.h5",
        progress=False,
    )
    assert read_features(out, demo20).shape == (20, 10, 128)  # the thesis's best: PCA to 128
    prov = read_provenance(out)
    assert prov["weights"] == yamnet_dir and len(prov["weights_sha256"]) == 64


@pytest.mark.slow
def test_vggish_cache_end_to_end(vggish_dir, tiny_demo, tmp_path):
    from avcache.datasets.ave import load_ave

    root, _ = tiny_demo
    ds = load_ave(root)
    out = run.run("audio", "vggish", {"handle": vggish_dir}, ds, root / "AVE", tmp_path / "v.h5", progress=False)
    feats = read_features(out, ds)
    assert feats.shape == (12, 10, 128) and np.isfinite(feats).all()  # the AVE baseline's shape


def test_hub_handle_that_does_not_load_says_how(tmp_path):
    with pytest.raises(WeightsNotFound, match=r"vggish: could not load .* set extractors.vggish.handle"):
        extractors.create("vggish", {"handle": str(tmp_path / "missing")})


# --- OpenL3 (torchopenl3) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def openl3_weights(tmp_path_factory):
    import torch
    import torchopenl3

    torch.manual_seed(0)
    net = torchopenl3.models.PytorchOpenl3(input_repr="mel128", content_type="env", embedding_size=512)
    path = tmp_path_factory.mktemp("openl3") / "torchopenl3_mel128_env_512.pth.tar"
    torch.save(net.state_dict(), path)
    return str(path)


@pytest.mark.slow
def test_openl3_windows_are_centred_on_their_timestamps(openl3_weights):
    import torch

    ex = extractors.create(
        "openl3",
        {"input_repr": "mel128", "content_type": "env", "embedding_size": 512, "weights": openl3_weights, "hop": 0.5},
    )
    x = step_signal(48000)
    values, times = ex.embed(x)
    assert values.shape == (len(times), 512) and np.allclose(times, np.arange(20) * 0.5)
    # the row stamped 4.5 s is the embedding of the 1-s window [4.0, 5.0) s
    k = int(np.flatnonzero(np.isclose(times, 4.5))[0])
    window = torch.from_numpy(x[4 * 48000 : 5 * 48000]).float()[None]
    with torch.no_grad():
        direct = ex.model(window[:, None, :] if window.ndim == 2 else window)
    assert np.allclose(values[k], direct.numpy()[0], atol=1e-4)
    rows = pool_seconds(values, times)
    assert np.array_equal(rows[0], rows[3]) and change_row(rows) in (4, 5)


@pytest.mark.slow
def test_openl3_cache_pca_to_128(openl3_weights, demo20, tmp_path):
    opts = {
        "input_repr": "mel128",
        "content_type": "env",
        "embedding_size": 512,
        "weights": openl3_weights,
        "hop": 1.0,
        "reduction": {"method": "pca", "dim": 128},
    }
    out = run.run("audio", "openl3", opts, demo20, demo20.videos, tmp_path / "o.h5", progress=False)
    assert read_features(out, demo20).shape == (20, 10, 128)


def test_openl3_bad_options_and_weights(tmp_path):
    with pytest.raises(ValueError, match="embedding_size must be one of"):
        extractors.create("openl3", {"embedding_size": 128})
    with pytest.raises(WeightsNotFound, match="does not exist; set extractors.openl3.weights"):
        extractors.create("openl3", {"weights": str(tmp_path / "none.pth.tar")})


# --- fairseq wav2vec / vq-wav2vec ---------------------------------------------------------


def save_fairseq_checkpoint(path, vq_type="none", channels=512):
    """A wav2vec 1.0 checkpoint in fairseq's own format (cfg + model + optimizer history), with
    the real encoder geometry (strides 5,4,2,2,2: one frame per 160 samples) and one context layer."""
    import torch
    from fairseq.models.wav2vec import Wav2VecConfig, Wav2VecModel
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    cfg = Wav2VecConfig(
        conv_feature_layers=f"[({channels}, 10, 5), ({channels}, 8, 4), "
        f"({channels}, 4, 2), ({channels}, 4, 2), ({channels}, 4, 2)]",
        conv_aggregator_layers=f"[({channels}, 3, 1)]",
        vq_type=vq_type,
        vq_vars=16,
        vq_groups=2,
        vq_dim=channels,
        vq_depth=1,
        combine_groups=True,
        offset="auto",
    )
    model = Wav2VecModel.build_model(cfg, task=None)
    model_cfg = {**OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True), "_name": "wav2vec"}
    torch.save(
        {
            "cfg": OmegaConf.create(
                {
                    "model": model_cfg,
                    "task": {"_name": "audio_pretraining", "data": "."},
                    "criterion": {"_name": "wav2vec", "infonce": True},
                    "common": {"tpu": False},
                    "checkpoint": {},
                }
            ),
            "model": model.state_dict(),
            "extra_state": {},
            "optimizer_history": [
                {
                    "criterion_name": "Wav2vecCriterion",
                    "optimizer_name": "Adam",
                    "lr_scheduler_state": {"best": None},
                    "num_updates": 0,
                }
            ],
        },
        path,
    )
    return str(path)


@pytest.fixture(scope="module")
def fairseq_ckpts(tmp_path_factory):
    pytest.importorskip("fairseq", reason="the fairseq extra is not installed")
    d = tmp_path_factory.mktemp("fairseq")
    return {
        vq: save_fairseq_checkpoint(d / f"w2v_{vq}.pt", vq, channels=64 if vq == "none" else 32)
        for vq in ("none", "gumbel", "kmeans")
    }


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["z", "c"])
def test_wav2vec_frames_every_160_samples_and_alignment(fairseq_ckpts, layer):
    ex = extractors.create("wav2vec", {"checkpoint": fairseq_ckpts["none"], "layer": layer})
    assert (ex.stride, ex.field) == (160, 465)
    x = step_signal(16000)
    values, times = ex.embed(x)
    assert values.shape == ((len(x) - 465) // 160 + 1, 64)
    assert np.allclose(np.diff(times), 0.01) and np.isclose(times[0], 465 / 2 / 16000)
    rows = pool_seconds(values, times)
    assert np.allclose(rows[0], rows[3]) and change_row(rows) == 5


@pytest.mark.slow
@pytest.mark.parametrize("vq", ["gumbel", "kmeans"])
def test_vq_wav2vec_layers(fairseq_ckpts, vq):
    x = step_signal(16000)
    for layer in ("z", "q", "c"):
        ex = extractors.create("vq_wav2vec", {"checkpoint": fairseq_ckpts[vq], "layer": layer})
        rows = pool_seconds(*ex.embed(x))
        assert rows.shape == (10, 32) and np.isfinite(rows).all()
    with pytest.raises(WeightsNotFound, match="use the vq_wav2vec extractor"):
        extractors.create("wav2vec", {"checkpoint": fairseq_ckpts[vq]})


@pytest.mark.slow
def test_wav2vec_variants_and_pca_cache(fairseq_ckpts, demo20, tmp_path):
    x = step_signal(16000)
    for variant in ("per_second", "np_mean"):
        ex = extractors.create("wav2vec", {"checkpoint": fairseq_ckpts["none"], "variant": variant})
        rows = pool_seconds(*ex.embed(x))
        assert rows.shape == (10, 64) and change_row(rows) == 5
        if variant == "per_second":  # each second on its own: silent seconds are identical
            assert np.array_equal(rows[0], rows[4])
    opts = {"checkpoint": fairseq_ckpts["none"], "reduction": {"method": "pca", "dim": 32}}
    out = run.run("audio", "wav2vec", opts, demo20, demo20.videos, tmp_path / "w.h5", progress=False)
    assert read_features(out, demo20).shape == (20, 10, 32)


def test_wav2vec_without_checkpoint_says_where_to_get_it(monkeypatch):
    monkeypatch.delenv("WAV2VEC_CHECKPOINT", raising=False)
    with pytest.raises(WeightsNotFound, match=r"wav2vec: no checkpoint given. Download wav2vec_large.pt"):
        extractors.create("wav2vec", {})


# --- wav2vec 2.0 (transformers) -----------------------------------------------------------


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory):
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v2"))


@pytest.mark.slow
def test_wav2vec2_320_sample_stride_alignment(wav2vec2_dir):
    ex = extractors.create("wav2vec2", {"model": wav2vec2_dir, "layer": "conv"})
    assert (ex.stride, ex.field) == (320, 400)
    x = step_signal(16000)
    values, times = ex.embed(x)
    assert values.shape == ((len(x) - 400) // 320 + 1, 32)
    assert np.allclose(np.diff(times), 0.02) and np.isclose(times[0], 200 / 16000)
    rows = pool_seconds(values, times)
    assert np.allclose(rows[0], rows[3]) and change_row(rows) == 5


@pytest.mark.slow
def test_wav2vec2_hidden_states_and_cache(wav2vec2_dir, demo20, tmp_path):
    x = step_signal(16000)
    last = pool_seconds(*extractors.create("wav2vec2", {"model": wav2vec2_dir}).embed(x))
    first = pool_seconds(*extractors.create("wav2vec2", {"model": wav2vec2_dir, "layer": 1}).embed(x))
    assert last.shape == first.shape == (10, 192) and not np.allclose(last, first)
    opts = {"model": wav2vec2_dir, "reduction": {"method": "pca", "dim": 128}}
    out = run.run("audio", "wav2vec2", opts, demo20, demo20.videos, tmp_path / "w2.h5", progress=False)
    assert read_features(out, demo20).shape == (20, 10, 128)  # the thesis's PCA to 10x128
    assert len(read_provenance(out)["weights_sha256"]) == 64


def test_wav2vec2_unknown_model_says_how(tmp_path):
    with pytest.raises(WeightsNotFound, match="set extractors.wav2vec2.model"):
        extractors.create("wav2vec2", {"model": str(tmp_path / "nothing")})
