"""Decoding as a user's own files need it: one clock for both streams, any container, real lengths,
broken tails, display geometry, and the models' own downmix and resampling. Every file is made
here with PyAV (or is a shared real clip)."""

import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
from helpers import DOG, colour, dominant_hz, encode, remux

from avcache import media
from avcache.extraction.extractors.base import AudioExtractor, VisualExtractor
from avcache.media import MediaError, find_video, load_audio, load_frames

SR = 16000


def av_file(path, fmt, seconds=10.0, video_from=0.0, audio_from=0.0, gap=None, shift=0.0, fps=25):
    """Colour ``colour(s)`` and tone 300 + 100 s Hz during second s of presentation time, the
    video from ``video_from``, the audio from ``audio_from`` (negative: an edit list cuts it), the
    audio packets in ``gap`` left out, every timestamp moved by ``shift`` (container start)."""
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream("mpeg4", rate=fps, options={"qscale": "2"})
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = out.add_stream("aac", rate=SR, layout="mono")
        first = round(video_from * fps)
        for k in range(first, round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), colour(k // fps), np.uint8), format="rgb24")
            frame.pts, frame.time_base = k + round(shift * fps), Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        t = audio_from + np.arange(round((seconds - audio_from) * SR)) / SR
        x = (0.4 * np.sin(2 * np.pi * (300 + 100 * np.floor(t)) * t)).astype(np.float32)
        start = round((audio_from + shift) * SR)
        for k in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(x[None, k : k + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SR, start + k, Fraction(1, SR)
            for p in aus.encode(frame):
                if not (gap and gap[0] <= float(p.pts * p.time_base) - shift < gap[1]):
                    out.mux(p)
        out.mux(aus.encode(None))
    return path


def rms(x):
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


# --- 1. one clock for audio and video ------------------------------------------------------

EXT = {"mov": "mov", "matroska": "mkv", "mpegts": "ts"}
SYNC_CASES = {
    "audio_late_mov": dict(fmt="mov", audio_from=0.28),  # QuickTime: an empty edit delays the audio
    "audio_early_mov": dict(fmt="mov", video_from=0.52),
    "audio_gap_mov": dict(fmt="mov", gap=(4.0, 5.0)),
    "container_start_3s_mkv": dict(fmt="matroska", audio_from=0.28, shift=3.0),
    "container_start_3s_ts": dict(fmt="mpegts", audio_from=0.28, shift=3.0),
    "edit_list_cuts_audio_mov": dict(fmt="mov", audio_from=-0.5),
}


@pytest.mark.parametrize("case", SYNC_CASES)
def test_tone_and_colour_that_change_together_land_in_the_same_second(tmp_path, case):
    spec = dict(SYNC_CASES[case])
    path = av_file(tmp_path / f"{case}.{EXT[spec['fmt']]}", **spec)
    a, f = load_audio(path, SR), load_frames(path, 4, (32, 24))
    for img, t in zip(f.images, f.times):
        assert np.abs(img.reshape(-1, 3).mean(0) - colour(int(t))).max() < 12, t
    audio_from, gap = max(spec.get("audio_from", 0.0), 0.0), spec.get("gap") or (99, 99)
    heard = 0
    for s in range(10):
        for lo in (0.05, 0.75):  # both ends of every second: a shift of 0.05 s or more shows
            window = slice(int((s + lo) * SR), int((s + lo + 0.2) * SR))
            if s + lo + 0.2 <= audio_from or gap[0] <= s + lo and s + lo + 0.2 <= gap[1]:
                assert rms(a.samples[window]) < 0.01, (s, lo)  # silence where the file has no audio
            elif s + lo >= audio_from:
                assert abs(dominant_hz(a.samples[window]) - (300 + 100 * s)) < 5, (s, lo)
                heard += 1
    assert heard >= 16
    assert abs(a.start_seconds - audio_from) < 0.07  # AAC's priming samples play just before the tone
    if spec.get("gap"):
        assert abs(a.gap_seconds - 1) < 0.1 and any("gaps" in n for n in a.notes())
    if spec.get("video_from"):
        assert abs(f.start_seconds - 0.52) < 1e-6 and f.lead == 2 and any("starts at 0.52" in n for n in f.notes())
    if audio_from > 0.1:
        assert any(n.startswith("audio starts at") for n in a.notes())


def test_decoding_is_byte_identical_across_runs(tmp_path):
    path = av_file(tmp_path / "late.mov", "mov", audio_from=0.28, gap=(4.0, 5.0))
    for resampler in ("soxr_hq", "kaiser_best"):
        assert (
            load_audio(path, SR, resampler=resampler).samples.tobytes()
            == load_audio(path, SR, resampler=resampler).samples.tobytes()
        )
    assert load_frames(path, 4, (32, 24)).images.tobytes() == load_frames(path, 4, (32, 24)).images.tobytes()


# --- 2. any container ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ext, fmt", [(".mkv", "matroska"), (".mov", "mov"), (".MOV", "mov"), (".avi", "avi"), (".3gp", "3gp")]
)
def test_a_video_is_found_whatever_its_container_and_lands_in_the_same_seconds(tmp_path, ext, fmt):
    folder = tmp_path / "videos"
    folder.mkdir()
    path = remux(encode(tmp_path / "original.mp4", seconds=3), folder / f"v{ext}", fmt)
    (folder / "v.info.json").write_text("{}")  # what downloaders leave beside a video
    (folder / "vv.mp4").write_bytes(b"another video")
    assert find_video(folder, "v") == path
    a, f = load_audio(path, SR), load_frames(path, 2, (32, 24))
    assert a.file == f.file == str(path)
    for s in range(3):
        assert abs(dominant_hz(a.samples[s * SR + 2000 : (s + 1) * SR - 2000]) - (300 + 100 * s)) < 5
    for img, t in zip(f.images[:6], f.times):
        assert np.abs(img[12, 20].astype(int) - colour(int(t))).max() < 25, t


def test_audio_only_files_serve_audio_and_fail_video_clearly(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    wav = remux(encode(tmp_path / "a.mp4", seconds=2, video=False), folder / "a.wav", "wav")  # AAC in WAV
    flac = folder / "b.flac"
    with av.open(str(flac), "w") as out:
        s = out.add_stream("flac", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, SR), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = SR, 0
        out.mux(s.encode(frame))
        out.mux(s.encode(None))
    for vid, path in (("a", wav), ("b", flac)):
        assert find_video(folder, vid) == path
        assert load_audio(path, SR).samples.shape == (10 * SR,)
        with pytest.raises(MediaError, match=f"{path.name}: no video stream"):
            load_frames(path, 1, (16, 16))


def test_two_files_for_one_id_are_refused_naming_both_and_none_names_folder_and_extensions(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"a")
    (tmp_path / "x.webm").write_bytes(b"b")
    with pytest.raises(MediaError, match=r"2 files for video x \(x\.mp4 and x\.webm\); keep one"):
        find_video(tmp_path, "x")
    with pytest.raises(MediaError) as e:
        find_video(tmp_path, "y")
    message = str(e.value)
    assert message.startswith(f"{tmp_path}: no file for video y") and message.endswith("y.mp4: file not found")
    assert all(ext in message for ext in (".mkv", ".webm", ".avi", ".mov", ".flv", ".ogv", ".wav", ".flac", ".mp3"))


# --- 3. real lengths -----------------------------------------------------------------------


def test_a_long_video_without_audio_records_its_real_length_and_the_trim(tmp_path):
    path = encode(tmp_path / "long.mp4", seconds=30, fps=5, size=(32, 24), audio=False)
    f = load_frames(path, 2, (16, 16))
    assert abs(f.source_seconds - 30) < 0.01 and abs(f.trimmed_seconds - 20) < 0.01
    assert f.facts()["source_seconds"] == f.source_seconds and not f.length_is_lower_bound
    assert "video trimmed to 10 s (the file's video runs to 30.00 s)" in f.notes()


def live_webm(path, seconds=30):
    """A WebM as browsers record it: no duration in any header."""
    with av.open(str(path), "w", format="webm", options={"live": "1"}) as out:
        vs = out.add_stream("libvpx", rate=5)
        vs.width, vs.height, vs.pix_fmt = 32, 24, "yuv420p"
        aus = out.add_stream("libopus", rate=48000, layout="mono")
        for k in range(seconds * 5):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), colour(k // 5), np.uint8), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 5)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(seconds * 48000) / 48000)).astype(np.float32)
        for k in range(0, len(x), 960):
            frame = av.AudioFrame.from_ndarray(x[None, k : k + 960], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, k, Fraction(1, 48000)
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))
    with av.open(str(path)) as c:
        assert c.duration is None and all(s.duration is None for s in c.streams)
    return path


def test_without_a_duration_header_the_stream_is_read_to_its_end_within_a_bound(tmp_path, monkeypatch):
    path = live_webm(tmp_path / "live.webm")
    a, f = load_audio(path, SR), load_frames(path, 2, (16, 16))
    assert abs(a.source_seconds - 30) < 0.05 and abs(f.source_seconds - 30) < 0.01
    assert "audio trimmed to 10 s (the file's audio runs to 30.00 s)" in a.notes()
    monkeypatch.setattr(media, "PROBE_SECONDS", 15.0)
    a, f = load_audio(path, SR), load_frames(path, 2, (16, 16))
    assert a.length_is_lower_bound and f.length_is_lower_bound and 15 < f.source_seconds < 16
    assert any("runs to at least 15" in n for n in f.notes())


# --- 4. broken tails -----------------------------------------------------------------------


def test_a_file_cut_mid_packet_keeps_every_frame_that_decodes(tmp_path):
    """Frame-threaded H.264 loses the frames around the damaged packet without reporting it."""
    path = tmp_path / "whole.flv"
    with av.open(str(path), "w", format="flv") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for k in range(50):  # noise: big packets, so the cut lands inside one
            img = np.random.default_rng(k).integers(0, 256, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 25)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = packets[-5]
    cut = tmp_path / "cut.flv"
    cut.write_bytes(path.read_bytes()[: pos + size // 2])
    kept = []  # reference: single-threaded, every packet that decodes, the decoder flushed
    with av.open(str(cut)) as c:
        s = c.streams.video[0]
        start = float(s.start_time * s.time_base)
        for packet in c.demux(s):
            try:
                kept += packet.decode()
            except av.error.InvalidDataError:
                pass
    f = load_frames(cut, 25, (64, 48))
    assert abs(f.source_seconds - (float(kept[-1].pts * kept[-1].time_base) - start + 0.04)) < 1e-6
    assert np.array_equal(f.images[-1], kept[-1].to_ndarray(format="rgb24"))
    assert f.single_threaded and f.decode_errors >= 1
    assert any("decoded again single-threaded" in n for n in f.notes())
    assert load_frames(cut, 25, (64, 48)).images.tobytes() == f.images.tobytes()


# --- 6. display geometry -------------------------------------------------------------------


def pal_disc(path):
    """PAL 704x576 with 16:11 pixels, showing a disc that is round on screen."""
    sar = Fraction(16, 11)
    yy, xx = np.mgrid[0:576, 0:704]
    img = np.zeros((576, 704, 3), np.uint8)
    img[((xx - 352) * float(sar)) ** 2 + (yy - 288) ** 2 < 200**2] = 255
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=5, options={"qscale": "2"})
        vs.width, vs.height, vs.pix_fmt = 704, 576, "yuv420p"
        vs.codec_context.sample_aspect_ratio = sar
        for k in range(5):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 5)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def disc_aspect(img):
    ys, xs = np.nonzero(img.min(-1) > 128)
    return (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)


def test_non_square_pixels_are_shown_at_display_aspect_and_recorded(tmp_path):
    path = pal_disc(tmp_path / "pal.mp4")
    f = load_frames(path, 1, (224, 224), duration=1)  # stretch: 1024x576 shown, squeezed to 224x224
    assert f.source_size == (704, 576) and f.display_size == (1024, 576)
    assert f.facts()["sample_aspect_ratio"] == pytest.approx(16 / 11)
    assert (
        f.facts()["display_width"] == 1024
        and "pixels are not square (sample aspect ratio 16:11): stored 704x576, shown as 1024x576" in f.notes()
    )
    assert disc_aspect(f.images[0]) == pytest.approx(576 / 1024, rel=0.05)

    class KeepsAspect(VisualExtractor):  # an extractor that keeps the aspect sees a round disc
        image_size = (224, 224)

    for fit in ("pad", "crop"):
        KeepsAspect.fit = fit
        img = KeepsAspect(frames_per_second=1).decode(path).images[0]
        assert disc_aspect(img) == pytest.approx(1, rel=0.05), fit  # 11/16 if pixels were taken as square
        bars = img[:40].max() == 0 and img[-40:].max() == 0  # 1024x576 in a square: 49 black rows each side
        assert bars == (fit == "pad"), fit


def test_cover_art_is_not_a_video_stream(tmp_path):
    path = tmp_path / "song.mp3"
    with av.open(str(path), "w", format="mp3") as out:
        aus = out.add_stream("libmp3lame", rate=44100, layout="mono")
        pic = out.add_stream("mjpeg", rate=1)
        pic.width, pic.height, pic.pix_fmt = 32, 32, "yuvj420p"
        pic.disposition = av.stream.Disposition.attached_pic
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 1)
        out.mux(pic.encode(frame))
        x = np.zeros((1, 44100), np.float32)
        for k in range(0, 44100, 1152):
            frame = av.AudioFrame.from_ndarray(x[:, k : k + 1152], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, k, Fraction(1, 44100)
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))
    with pytest.raises(MediaError, match=r"song.mp3: no video stream \(only a cover picture\)"):
        load_frames(path, 1, (16, 16))
    assert load_audio(path, SR).source_seconds > 0.9


# --- 7. downmix and resampling as the models' own tools do them -------------------------------


def pcm_wav(path, planes, sr=SR):
    """16-bit PCM WAV of int16 ``planes`` [channels, n], exactly those samples."""
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[len(planes)]
    with av.open(str(path), "w", format="wav") as out:
        s = out.add_stream("pcm_s16le", rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes.T.reshape(1, -1)), format="s16", layout=layout)
        frame.sample_rate, frame.pts = sr, 0
        out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


@pytest.mark.parametrize("rate", [16000, 44100])
def test_stereo_with_two_identical_channels_gives_the_samples_of_its_mono_original(tmp_path, rate):
    x = (np.random.default_rng(0).standard_normal(3 * rate) * 8000).clip(-32768, 32767).astype(np.int16)
    mono = load_audio(pcm_wav(tmp_path / "mono.wav", x[None], rate), SR)
    stereo = load_audio(pcm_wav(tmp_path / "stereo.wav", np.stack([x, x]), rate), SR)
    assert np.array_equal(stereo.samples, mono.samples) and stereo.source_channels == 2
    if rate == SR:
        assert np.array_equal(mono.samples[: len(x)], x / np.float32(32768))


def test_five_one_is_the_mean_of_all_six_channels(tmp_path):
    t = np.arange(2 * SR) / SR
    planes = np.stack([3000 * (c + 1) * np.sin(2 * np.pi * (200 + 150 * c) * t) for c in range(6)]).astype(np.int16)
    a = load_audio(pcm_wav(tmp_path / "51.wav", planes), SR)
    expected = (planes.astype(np.float64) / 32768).mean(0).astype(np.float32)
    assert np.array_equal(a.samples[: len(t)], expected) and a.source_channels == 6
    assert "audio downmixed from 6 channels (mean of all channels)" in a.notes()


def dog_channels():
    with av.open(str(DOG)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], 1)


def test_shared_stereo_clip_is_the_channel_mean_resampled_as_librosa_load_does():
    import librosa

    ch = dog_channels()
    assert ch.shape[0] == 2
    native = load_audio(DOG, 44100)
    assert np.array_equal(native.samples, ch.mean(0)[:441000])  # not sqrt(2) times it (FFmpeg's downmix)
    assert np.abs(native.samples).max() <= np.abs(ch).max()
    a = load_audio(DOG, SR)  # musicnn's tools: librosa.load(sr=16000) = to_mono, then soxr_hq
    ref = librosa.resample(librosa.to_mono(ch), orig_sr=44100, target_sr=SR, res_type="soxr_hq")
    assert np.abs(a.samples - ref[: 10 * SR]).max() < 1e-6


def test_an_extractor_resamples_with_the_method_it_declares():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import resampy

    class VGGishLike(AudioExtractor):
        name, resampler = "vggish_like", "kaiser_best"

    ex = VGGishLike()
    a = ex.decode(DOG)
    ref = resampy.resample(dog_channels().astype(np.float64).mean(0), 44100, SR, filter="kaiser_best")
    assert a.resampler == "kaiser_best" and np.abs(a.samples - ref[: 10 * SR]).max() < 1e-6
    assert not np.allclose(a.samples, load_audio(DOG, SR).samples, atol=1e-4)  # not the soxr result
    assert ex.decoding()["resampler"] == "kaiser_best"
    ex.resampler = "sinc_fastest"
    with pytest.raises(ValueError, match="unknown resampler 'sinc_fastest'"):
        ex.decode(DOG)


def test_extractors_declare_their_models_resamplers():
    from avcache.extraction import extractors

    declared = {
        name: extractors.get(name).resampler
        for name in ("musicnn", "vggish", "yamnet", "openl3", "wav2vec", "vq_wav2vec", "wav2vec2")
    }
    assert declared == {
        "musicnn": "soxr_hq",
        "vggish": "kaiser_best",
        "yamnet": "kaiser_best",
        "openl3": "kaiser_best",
        "wav2vec": "soxr_hq",
        "vq_wav2vec": "soxr_hq",
        "wav2vec2": "soxr_hq",
    }


def test_a_missing_resampler_stops_the_extractor_before_any_video(monkeypatch):
    from avcache.extraction import extractors
    from avcache.extraction.extractors import WeightsNotFound

    def no_resampy(module):
        if module == "resampy":
            raise ImportError("No module named 'resampy'")
        return __import__(module)

    monkeypatch.setattr(media, "_import", no_resampy)
    with pytest.raises(
        WeightsNotFound,
        match=r"vggish: resampling with kaiser_best .* needs the `resampy` "
        r"package .*requirements.lock",
    ):
        extractors.create("vggish", {"handle": "/nowhere"})
