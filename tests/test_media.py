import numpy as np
import pytest
from helpers import BENTO, DOG, write_seconds_video

from avcache.media import MediaError, frame_times, load_audio, load_frames


def test_real_10s_clip_decodes_whole():
    a = load_audio(DOG, 16000)
    assert a.samples.shape == (160000,) and a.samples.dtype == np.float32
    assert a.padded_seconds == 0 and abs(a.source_seconds - 10) < 0.05
    assert np.abs(a.samples).max() > 0.05  # real sound, not silence
    f = load_frames(DOG, 16, (224, 224))
    assert f.images.shape == (160, 224, 224, 3) and f.held == 0
    assert np.allclose(f.times, frame_times(16))


def test_real_1s_clip_is_padded_to_10s_and_recorded():
    """The 1.1-s clip: audio is zero-padded, frames after its end repeat its last frame."""
    a = load_audio(BENTO, 16000)
    assert 0.9 < a.source_seconds < 1.2 and a.padded_seconds == pytest.approx(10 - a.source_seconds)
    tail = a.samples[int(np.ceil(a.source_seconds * 16000)) :]
    assert len(tail) > 8 * 16000 and not tail.any()
    f = load_frames(BENTO, 16, (224, 224))
    assert f.images.shape == (160, 224, 224, 3)
    assert 1.0 < f.source_seconds < 1.2
    after = f.times >= f.source_seconds
    assert f.held == after.sum() > 140
    assert all(np.array_equal(img, f.images[-1]) for img in f.images[after])


def test_sampled_frames_and_audio_land_in_the_right_second(tmp_path):
    path = tmp_path / "seconds.mp4"
    colours = np.random.default_rng(0).integers(0, 256, (10, 3))
    write_seconds_video(path, colours)
    f = load_frames(path, 16, (32, 24))
    for img, t in zip(f.images, f.times):
        assert np.abs(img.reshape(-1, 3).mean(0) - colours[int(t)]).max() < 12, t
    a = load_audio(path, 16000)
    for s in range(10):  # the dominant frequency of second s is 200 + 100 s Hz
        seg = a.samples[s * 16000 + 2000 : (s + 1) * 16000 - 2000]
        peak = np.fft.rfftfreq(len(seg), 1 / 16000)[np.abs(np.fft.rfft(seg)).argmax()]
        assert abs(peak - (200 + 100 * s)) < 5, s


def test_missing_and_broken_files_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="nope.mp4: file not found"):
        load_audio(tmp_path / "nope.mp4", 16000)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(MediaError, match="bad.mp4: cannot open container"):
        load_frames(bad, 4, (32, 32))
