"""``logmel`` and ``mfcc`` caches through the real extraction stage on real FSDD recordings,
checked against the librosa calls they state, and how the other readers see a 4-D cache."""

import h5py
import librosa
import numpy as np
import pytest
from helpers import fsdd_subset

from avcache.classification.heads import load_inputs
from avcache.contract import params as P
from avcache.contract.cache import CacheError, CacheWriter, read_features, read_spectrograms
from avcache.datasets.clips import load_clips
from avcache.extraction import extractors
from avcache.extraction import stage as run

SR, HOP, F = 22050, 441, 50


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory):
    root = fsdd_subset(tmp_path_factory.mktemp("fsdd") / "fsdd")
    return load_clips(root, "fsdd")


def extract(ds, name, out, **changes):
    """The stage on ``ds`` with params.yaml's options for ``name`` (as `dvc repro` runs it)."""
    options = {**P.section(P.load(), f"extractors.{name}"), **changes}
    return run.run("audio", name, options, ds, ds.videos, out, progress=False, device="cpu", decode_workers=0)


def waveform(ds, i):
    """What librosa.load gives for the clip, padded to the dataset's seconds as the stage pads it."""
    y, _ = librosa.load(f"{ds.videos}/{ds.paths[i]}", sr=SR)
    return np.pad(y, (0, ds.max_seconds * SR - len(y))), len(y)


@pytest.fixture(scope="module")
def logmel(fsdd, tmp_path_factory):
    return extract(fsdd, "logmel", tmp_path_factory.mktemp("cache") / "logmel.h5")


def test_logmel_rows_equal_librosa_melspectrogram_power_to_db(fsdd, logmel):
    x = read_features(logmel, fsdd)
    s = fsdd.max_seconds
    assert x.shape == (7, s, F, 128) and s == 3
    for i in range(len(x)):
        y, _ = waveform(fsdd, i)
        mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=HOP, window="hann", n_mels=128)
        want = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
        assert want.shape == (128, s * F + 1)  # the last frame, centred on the clip's end, is dropped
        np.testing.assert_allclose(x[i].reshape(s * F, 128), want[:, : s * F].T, rtol=0, atol=1e-4)
    with h5py.File(logmel) as f:
        assert (f.attrs["layout"], f.attrs["frames_per_second"], f.attrs["hop"], f.attrs["bands"]) == (
            "time_frequency", "50", "441", "128",
        )  # fmt: skip


def test_read_spectrograms_frames_and_valid_lengths(fsdd, logmel):
    x, valid_frames, fps = read_spectrograms(logmel, fsdd)
    assert fps == F and x.shape == (7, 3 * F, 128) and x.dtype == np.float32
    lengths = [waveform(fsdd, i)[1] for i in range(7)]
    # frame j (centre j / F s) is valid while its centre is before the audio's end
    assert valid_frames.tolist() == [int(np.ceil(n / SR * F)) for n in lengths]
    assert valid_frames.tolist() == [sum(j * HOP < n for j in range(3 * F)) for n in lengths]
    np.testing.assert_array_equal(x, read_features(logmel, fsdd).reshape(7, 3 * F, 128))


def test_mfcc_with_deltas_equals_librosa_mfcc_and_delta(fsdd, tmp_path):
    out = extract(fsdd, "mfcc", tmp_path / "mfcc.h5", deltas=[1, 2])
    x = read_features(out, fsdd)
    assert x.shape == (7, 3, F, 120)
    for i in (0, 4):
        y, _ = waveform(fsdd, i)
        m = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=40, n_fft=1024, hop_length=HOP, window="hann", n_mels=128)
        want = np.concatenate(
            [m, librosa.feature.delta(m, width=9, order=1), librosa.feature.delta(m, width=9, order=2)]
        )
        np.testing.assert_allclose(x[i].reshape(3 * F, 120), want[:, : 3 * F].T, rtol=0, atol=1e-4)


def test_two_runs_give_byte_identical_caches(fsdd, logmel, tmp_path):
    again = extract(fsdd, "logmel", tmp_path / "logmel.h5")
    assert again.read_bytes() == logmel.read_bytes()


def test_log_scale_and_per_clip_max_reference(fsdd, tmp_path):
    y, _ = waveform(fsdd, 0)
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=HOP, n_mels=64, fmax=4000.0)
    log = extractors.create("logmel", {"n_mels": 64, "fmax": 4000.0, "scale": "log", "log_offset": 1e-3})
    np.testing.assert_allclose(log.spectrogram(y), np.log(mel + 1e-3), rtol=0, atol=1e-5)
    rel = extractors.create("logmel", {"n_mels": 64, "fmax": 4000.0, "ref": "max"})
    np.testing.assert_allclose(rel.spectrogram(y), librosa.power_to_db(mel, ref=np.max, top_db=80.0), atol=1e-4)
    assert rel.spectrogram(y).max() == 0  # per clip: every clip's peak is 0 dB


def test_hop_must_divide_the_sample_rate_one_line():
    with pytest.raises(P.ParamsError) as e:
        extractors.create("logmel", {"hop": 512})
    msg = str(e.value)
    assert "\n" not in msg and "extractors.logmel.hop 512 does not divide sample_rate 22050" in msg
    assert "450 (49 frames/s), 490 (45 frames/s), 525 (42 frames/s)" in msg
    with pytest.raises(P.ParamsError, match=r"extractors\.mfcc: unknown key\(s\) \['top_db'\]"):
        extractors.create("mfcc", {"top_db": 60.0})
    with pytest.raises(P.ParamsError, match=r"extractors\.logmel\.ref must be float \| 'max', got 'min'"):
        extractors.create("logmel", {"ref": "min"})
    with pytest.raises(P.ParamsError, match=r"extractors\.mfcc\.deltas must list distinct orders"):
        extractors.create("mfcc", {"deltas": [3]})


def test_clip_heads_read_a_spectrogram_cache_as_each_seconds_mean_frame(fsdd, logmel):
    x, _, usable = load_inputs(fsdd, [logmel])
    assert x.shape == (7, 3, 128) and usable.all()
    np.testing.assert_allclose(x, read_features(logmel, fsdd).mean(2), rtol=1e-6)


def test_read_spectrograms_refuses_a_per_second_cache(fsdd, tmp_path):
    path = tmp_path / "vggish.h5"
    with CacheWriter(path, fsdd.video_ids, (3, 8), {"extractor": "vggish"}) as w:
        for i in range(7):
            w.write(i, np.zeros((3, 8), np.float32))
    with pytest.raises(CacheError, match="not a spectrogram cache"):
        read_spectrograms(path, fsdd)


@pytest.mark.slow  # generates the 12-video demo when no other test has
def test_ave_models_read_a_logmel_cache_as_each_seconds_mean_frame(demo_ds, tmp_path):
    from avcache.contract.pair import load_pair

    audio = extract(demo_ds, "logmel", tmp_path / "logmel.h5", n_mels=40)
    visual = tmp_path / "visual.h5"
    with CacheWriter(visual, demo_ds.video_ids, (10, 2, 2, 8), {"extractor": "grid"}) as w:
        for i in range(len(demo_ds.video_ids)):
            w.write(i, np.ones((10, 2, 2, 8), np.float32))
    pair = load_pair(demo_ds, audio, visual)
    assert pair.audio.shape == (12, 10, 40) and pair.visual.shape == (12, 10, 4, 8)
    np.testing.assert_allclose(pair.audio, read_features(audio, demo_ds).mean(2), rtol=1e-6)


@pytest.mark.subprocess
def test_decode_workers_give_the_serial_engines_bytes(fsdd, logmel, tmp_path):
    options = P.section(P.load(), "extractors.logmel")
    out = run.run(
        "audio", "logmel", options, fsdd, fsdd.videos, tmp_path / "logmel.h5", progress=False, decode_workers=1
    )
    assert out.read_bytes() == logmel.read_bytes()
