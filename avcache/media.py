"""Decode a video's audio and sampled frames with PyAV, both placed on one clock.

The clock starts where the file starts playing: the earlier of its video and audio start times,
after FFmpeg has applied the container's edit lists. Samples and frames are placed by their
timestamps, so a tone and a colour change that play together land in the same second whatever
each stream's offset, edit list or the container's start time: audio that starts late or has
gaps gets silence there, instants before the first frame show that frame.

Audio is decoded to float at its own rate, placed on the clock, downmixed to the mean of its
channels and resampled with the extractor's resampler, as the models' own tools prepare audio.
Frames are turned upright and taken at their display geometry (sample aspect ratio applied),
then fitted to the model's input size. Clips are cut to exactly ``duration`` seconds. A packet
that fails to decode is skipped and everything else kept. Everything found and done is returned
(``facts()`` numbers for the cache, ``notes()`` sentences for the report), including each
stream's real length and the file used.
"""

from __future__ import annotations

import stat
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avcache.contract.dataset import SEGMENTS  # the clip length decoded by default: AVE's seconds
from avcache.contract.io import counted

MARGIN = 1.0  # seconds decoded past the clip: enough for the resampler's filter and to see a trim
NOTE_AFTER = 0.1  # seconds of padding / trimming / offset worth a note (AAC alone adds ~0.03 s)
SYNC_TOLERANCE = 0.02  # audio timestamp jitter followed without inserting or dropping samples
PROBE_SECONDS = 3600.0  # a stream no header gives a length for is read (not decoded) this far
# A clip whose decoded audio never reaches this is digital silence: half the smallest step of 16-bit
# audio (-96 dBFS), so any sound a 16-bit file can hold is louder; encoded silence (AAC, Opus,
# FLAC, PCM) decodes to exact zeros.
SILENT_PEAK = 2.0**-16

# Looked up in this order, each in lower and upper case; .mp4 first, as AVE ships it.
VIDEO_EXTENSIONS = (
    ".mp4",
    ".mkv",
    ".webm",
    ".mov",
    ".avi",
    ".flv",
    ".ogv",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".m2ts",
    ".3gp",
    ".wmv",
    ".asf",
    ".mxf",
    ".vob",
    ".ogg",
)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".opus", ".oga", ".wma", ".aif", ".aiff")
EXTENSIONS = VIDEO_EXTENSIONS + AUDIO_EXTENSIONS

RESAMPLERS = {
    "soxr_hq": "soxr HQ, librosa.load's default (musicnn's and librosa-based tools)",
    "kaiser_best": "resampy kaiser_best (VGGish's vggish_input, YAMNet's and OpenL3's own code)",
    "ffmpeg": "FFmpeg's swresample defaults (this project's resampler before, for comparison)",
}
FITS = {
    "stretch": "the whole displayed picture resized to the input size (aspect not kept)",
    "crop": "the displayed picture scaled to cover the input size, centre cropped",
    "pad": "the displayed picture scaled to fit inside the input size, centred on black",
}


class MediaError(RuntimeError):
    """A video cannot be decoded as needed; the message names the file and the problem."""


def video_files(folder: str | Path, video_id: str) -> list[Path]:
    """The media files for ``video_id`` in ``folder``: ``<id>`` plus any known extension, each
    file once (a case-insensitive disk finds one file under two names)."""
    folder = Path(folder)
    found = {}
    names = [video_id] + [video_id + e for ext in EXTENSIONS for e in (ext, ext.upper())]
    for name in names:
        p = folder / name
        try:
            st = p.stat()
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode):
            found.setdefault((st.st_dev, st.st_ino), p)
    return list(found.values())


def find_video(folder: str | Path, video_id: str) -> Path:
    """The one media file for ``video_id`` in ``folder`` (``video_files``)."""
    found = video_files(folder, video_id)
    if len(found) == 1:
        return found[0]
    if found:
        both = " and ".join(sorted(p.name for p in found))
        raise MediaError(f"{folder}: {len(found)} files for video {video_id} ({both}); keep one of them in the folder")
    others = ", ".join(EXTENSIONS[1:])
    raise MediaError(
        f"{folder}: no file for video {video_id}: looked for {video_id} with {others} "
        f"(lower or upper case) and {video_id}.mp4: file not found"
    )


@dataclass
class Audio:
    samples: np.ndarray  # [duration * sr] float32 mono, on the clip's clock
    sr: int
    source_seconds: float  # the stream's real length, first sample to last (decoded or from headers)
    source_rate: int = 0
    source_channels: int = 0
    decode_error: str | None = None  # the first error, where it happened
    start_seconds: float = 0.0  # where the stream's first sample is on the clip's clock
    gap_seconds: float = 0.0  # silence inserted inside the clip where timestamps jump ahead
    dropped_seconds: float = 0.0  # audio dropped where timestamps step back (overlaps)
    decode_errors: int = 0
    resampler: str = "soxr_hq"
    file: str = ""  # the file decoded
    length_is_lower_bound: bool = False  # no header gave the length and reading stopped at PROBE_SECONDS
    peak: float | None = None  # the largest magnitude in ``samples`` (what the model hears)

    @property
    def silent(self) -> bool:
        """The clip is digital silence: every video like it gets the same features."""
        return self.peak is not None and self.peak < SILENT_PEAK

    @property
    def end_seconds(self) -> float:
        return self.start_seconds + self.source_seconds

    @property
    def padded_seconds(self) -> float:
        """Silence after the stream's end, inside the clip."""
        return max(0.0, len(self.samples) / self.sr - self.end_seconds)

    @property
    def trimmed_seconds(self) -> float:
        return max(0.0, self.end_seconds - len(self.samples) / self.sr)

    def facts(self) -> dict[str, float]:
        return {
            "source_seconds": self.source_seconds,
            "start_seconds": self.start_seconds,
            "padded_seconds": self.padded_seconds,
            "trimmed_seconds": self.trimmed_seconds,
            "gap_seconds": self.gap_seconds,
            "dropped_seconds": self.dropped_seconds,
            "source_rate": self.source_rate,
            "source_channels": self.source_channels,
            "partial": float(self.decode_error is not None),
            "decode_errors": self.decode_errors,
            "length_is_lower_bound": float(self.length_is_lower_bound),
        }

    def notes(self) -> list[str]:
        out = []
        clip = len(self.samples) / self.sr
        if self.decode_error:
            out.append(
                f"audio: {counted(self.decode_errors, 'decoding error')}, the first {self.decode_error}; "
                "everything that decoded is kept"
            )
        if self.start_seconds > NOTE_AFTER:
            out.append(f"audio starts at {self.start_seconds:.2f} s, after the video (silence before it)")
        if self.gap_seconds > 0:
            out.append(f"audio has gaps: {self.gap_seconds:.2f} s of silence inserted where its timestamps jump ahead")
        if self.dropped_seconds > 0:
            out.append(f"audio timestamps step back: {self.dropped_seconds:.2f} s of overlapping audio dropped")
        if self.padded_seconds > NOTE_AFTER:
            out.append(
                f"audio padded with {self.padded_seconds:.2f} s of silence (the audio ends at {self.end_seconds:.2f} s)"
            )
        if self.trimmed_seconds > NOTE_AFTER:
            bound = "at least " if self.length_is_lower_bound else ""
            out.append(f"audio trimmed to {clip:g} s (the file's audio runs to {bound}{self.end_seconds:.2f} s)")
        if 0 < self.source_rate < self.sr:
            out.append(f"audio upsampled {self.source_rate} -> {self.sr} Hz (nothing above {self.source_rate // 2} Hz)")
        if self.source_channels > 2:
            out.append(f"audio downmixed from {self.source_channels} channels (mean of all channels)")
        return out


@dataclass
class Frames:
    images: np.ndarray  # [n, h, w, 3] uint8 RGB, upright, at display geometry, fitted to the size
    times: np.ndarray  # [n] seconds, the instant each frame was sampled at
    source_seconds: float  # the stream's real length, first frame to the end of the last
    held: int  # sampled instants after the video's end (filled with its last frame)
    source_fps: float = 0.0
    source_size: tuple[int, int] = (0, 0)  # (width, height) as stored
    rotation: int = 0  # degrees counter-clockwise applied to make frames upright
    decode_error: str | None = None  # the first error, where it happened
    start_seconds: float = 0.0  # where the first frame is on the clip's clock
    lead: int = 0  # sampled instants before the first frame (filled with it)
    sample_aspect_ratio: float = 1.0  # width of a stored pixel on screen / its height
    display_size: tuple[int, int] = (0, 0)  # (width, height) as shown: aspect applied, upright
    decode_errors: int = 0
    single_threaded: bool = False  # decoded again without frame threads after an error
    fit: str = "stretch"
    file: str = ""  # the file decoded
    length_is_lower_bound: bool = False
    clip_seconds: float = SEGMENTS

    @property
    def end_seconds(self) -> float:
        return self.start_seconds + self.source_seconds

    @property
    def trimmed_seconds(self) -> float:
        return max(0.0, self.end_seconds - self.clip_seconds)

    def facts(self) -> dict[str, float]:
        return {
            "source_seconds": self.source_seconds,
            "start_seconds": self.start_seconds,
            "trimmed_seconds": self.trimmed_seconds,
            "held_frames": self.held,
            "lead_frames": self.lead,
            "source_fps": self.source_fps,
            "source_width": self.source_size[0],
            "source_height": self.source_size[1],
            "sample_aspect_ratio": self.sample_aspect_ratio,
            "display_width": self.display_size[0],
            "display_height": self.display_size[1],
            "rotation": self.rotation,
            "partial": float(self.decode_error is not None),
            "decode_errors": self.decode_errors,
            "length_is_lower_bound": float(self.length_is_lower_bound),
        }

    def notes(self) -> list[str]:
        out = []
        n = len(self.times)
        if self.decode_error:
            again = "; decoded again single-threaded" if self.single_threaded else ""
            out.append(
                f"video: {counted(self.decode_errors, 'decoding error')}, the first {self.decode_error}"
                f"{again}; everything that decoded is kept"
            )
        if self.lead:
            out.append(
                f"video starts at {self.start_seconds:.2f} s: the {self.lead} of {n} sampled "
                "frames before it show its first frame"
            )
        if self.held:
            out.append(
                f"{self.held} of {n} sampled frames repeat the last frame (video ends at {self.end_seconds:.2f} s)"
            )
        if self.trimmed_seconds > NOTE_AFTER:
            bound = "at least " if self.length_is_lower_bound else ""
            out.append(
                f"video trimmed to {self.clip_seconds:g} s (the file's video runs to {bound}{self.end_seconds:.2f} s)"
            )
        if self.rotation:
            out.append(f"frames rotated {self.rotation} degrees to upright (display matrix)")
        if abs(self.sample_aspect_ratio - 1) > 0.01:
            (w, h), (dw, dh) = self.source_size, self.display_size
            sar = Fraction(self.sample_aspect_ratio).limit_denominator(1000)
            out.append(
                f"pixels are not square (sample aspect ratio {sar.numerator}:{sar.denominator}): "
                f"stored {w}x{h}, shown as {dw}x{dh}"
            )
        return out


LOCAL_ONLY = {"protocol_whitelist": "file"}  # and so for whatever the demuxer opens (playlists, references)


def local_url(path: Path) -> str:
    """What FFmpeg is given to open ``path``: the file itself, through the ``file`` protocol.

    Bare, a path whose first component holds a ``:`` (``concat:a|b``, ``http:/host/x``,
    ``pipe:0``: a dataset's CSV with ``root: .`` gives such relative paths) names an FFmpeg
    protocol, which reads other files, standard input or the network. A path that is not a file
    is refused here, before FFmpeg sees it; one that is (a file named so) is opened as that file.
    """
    name = str(path)
    head = name.split("/", 1)[0]
    if ":" in head and not path.is_file():
        raise MediaError(
            f"{path}: not a local file: FFmpeg would read {head.split(':', 1)[0] + ':'!r} as a protocol "
            "(other files, a device or the network); media are opened from local files only"
        )
    return "file:" + name


def _open(path: Path):
    url = local_url(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    try:
        return av.open(url, container_options=LOCAL_ONLY)
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise MediaError(
            f"{path}: cannot open container, the file is corrupt, truncated or not a media file ({e})"
        ) from None


def _pick(streams):
    """The stream a player plays: the first marked default, else the first."""
    streams = list(streams)
    default = [s for s in streams if s.disposition & av.stream.Disposition.default]
    return (default or streams or [None])[0]


def _streams(c):
    """(video, audio) streams used, either None. Cover art (an attached picture) is not video."""
    video = _pick(s for s in c.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
    return video, _pick(c.streams.audio)


def _origin(c, *streams) -> float:
    """Where the file starts playing: the earliest start of its video and audio streams."""
    starts = [float(s.start_time * s.time_base) for s in streams if s is not None and s.start_time is not None]
    if starts:
        return min(starts)
    return c.start_time / av.time_base if c.start_time is not None else 0.0


def _header_end(c, stream, origin: float) -> float | None:
    """Where the stream ends on the clock by the stream's header, else by the container's."""
    if stream.duration:
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base) - origin
    if c.duration:
        return ((c.start_time or 0) + c.duration) / av.time_base - origin
    return None


def _probe_end(c, stream, origin: float, end: float) -> tuple[float, bool]:
    """Read on (packets only, no decoding) to the stream's end or PROBE_SECONDS: (end, complete)."""
    try:
        for packet in c.demux(stream):
            if packet.pts is not None:
                end = max(end, float((packet.pts + (packet.duration or 0)) * stream.time_base) - origin)
                if end > PROBE_SECONDS:
                    return end, False
    except av.error.FFmpegError:
        pass
    return end, True


def _stream_end(c, stream, origin: float, decoded_end: float, stopped: bool) -> tuple[float, bool]:
    """The stream's real end on the clock: what decoded, or past a clip cut short on purpose, what
    the headers say (read to the end, bounded, when none does)."""
    if not stopped:
        return decoded_end, False
    header = _header_end(c, stream, origin)
    if header is not None:
        return max(header, decoded_end), False
    end, complete = _probe_end(c, stream, origin, decoded_end)
    return end, not complete


class _Decoded:
    """Every frame of ``stream`` that decodes. A packet that fails is skipped (the decoder picks
    up again at the next), a demuxer error ends the stream; either way the frames still inside
    the decoder are flushed out, and the errors and packet counts are kept."""

    def __init__(self, container, stream, origin: float):
        self.container, self.stream, self.origin = container, stream, origin
        self.packets, self.frames, self.errors, self.ended, self.last = 0, 0, [], False, None

    def __iter__(self):
        try:
            for packet in self.container.demux(self.stream):
                if packet.size:
                    self.packets += 1
                    self.last = packet.pts if packet.pts is not None else self.last
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:
                    self.error(e)
                    continue
                self.frames += len(frames)
                yield from frames
        except av.error.FFmpegError as e:  # the container cannot be read further
            self.error(e)
            try:
                frames = self.stream.codec_context.decode(None)
            except av.error.FFmpegError:
                frames = []
            self.frames += len(frames)
            yield from frames
        self.ended = True

    def error(self, e) -> None:
        what = e if isinstance(e, str) else (getattr(e, "strerror", None) or str(e))
        where = "" if self.last is None else f"at {float(self.last * self.stream.time_base) - self.origin:.2f} s: "
        self.errors.append(where + what)

    def first_error(self) -> str | None:
        return self.errors[0] if self.errors else None


# --- audio --------------------------------------------------------------------------------

_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31, np.dtype(np.int64): 2.0**63}


def _mono(frame) -> np.ndarray:
    """The mean of the frame's channels, float32 in [-1, 1] (FFmpeg's scaling of integer samples)."""
    x = frame.to_ndarray()
    channels = len(frame.layout.channels) or 1
    if not frame.format.is_planar:
        x = x.reshape(-1, channels).T
    if x.dtype == np.uint8:
        x = (x.astype(np.float64) - 128) / 128
    elif x.dtype in _SCALE:
        x = x / _SCALE[x.dtype]
    return x.astype(np.float64).mean(0).astype(np.float32)


def resampler_missing(method: str) -> str | None:
    """Why ``method`` cannot run here (its package is missing), or None."""
    if method not in RESAMPLERS:
        return f"unknown resampler {method!r}; choose one of {sorted(RESAMPLERS)}"
    module, lock = {"soxr_hq": ("soxr", "requirements.lock"), "kaiser_best": ("resampy", "requirements.lock")}.get(
        method, (None, "")
    )
    if module:
        try:
            _import(module)
        except ImportError as e:
            return (
                f"resampling with {method} ({RESAMPLERS[method]}) needs the `{module}` package "
                f"({e}); it is pinned in {lock}"
            )
    return None


def _import(module: str):
    with warnings.catch_warnings():  # resampy 0.2 imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        return __import__(module)


def resample(x: np.ndarray, rate: int, sr: int, method: str = "soxr_hq") -> np.ndarray:
    """Mono float32 ``x`` from ``rate`` to ``sr`` Hz with the named method (see RESAMPLERS)."""
    if rate == sr:
        return x
    problem = resampler_missing(method)
    if problem:
        raise RuntimeError(problem)
    if method == "soxr_hq":
        return _import("soxr").resample(x, rate, sr, quality="soxr_hq").astype(np.float32)
    if method == "kaiser_best":  # on float64, as vggish_input passes it
        return _import("resampy").resample(x.astype(np.float64), rate, sr, filter="kaiser_best").astype(np.float32)
    frame = av.AudioFrame.from_ndarray(x[None], format="flt", layout="mono")
    frame.sample_rate = rate
    swr = av.AudioResampler(format="flt", layout="mono", rate=sr)
    out = [f.to_ndarray().reshape(-1) for f in swr.resample(frame) + swr.resample(None)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def load_audio(path: str | Path, sr: int, duration: float = SEGMENTS, resampler: str = "soxr_hq") -> Audio:
    """Mono float32 at ``sr`` Hz on the clip's clock, exactly ``duration`` s.

    Decoded at the source rate, placed by timestamps (silence where the audio starts late or
    has gaps), downmixed to the mean of the channels, then resampled with ``resampler``."""
    path = Path(path)
    if resampler not in RESAMPLERS:
        raise ValueError(resampler_missing(resampler))
    with _open(path) as c:
        video, stream = _streams(c)
        if stream is None:
            raise MediaError(f"{path}: no audio stream")
        origin = _origin(c, video, stream)
        rate, channels = stream.codec_context.sample_rate or 0, stream.codec_context.channels or 0
        decoded = _Decoded(c, stream, origin)
        pieces, pos, first, gap, dropped, stopped = [], None, None, 0, 0, False
        for frame in decoded:
            if not frame.samples:
                continue
            rate = rate or frame.sample_rate
            if frame.sample_rate != rate:
                decoded.error(f"sample rate changes from {rate} to {frame.sample_rate} Hz; decoding stopped")
                break
            channels = max(channels, len(frame.layout.channels))
            x = _mono(frame)
            if frame.pts is not None:
                at = round((float(frame.pts * stream.time_base) - origin) * rate)
                if pos is None:
                    pos = first = at
                elif at > pos + SYNC_TOLERANCE * rate:
                    gap += max(0, min(at, duration * rate) - pos)
                    pos = at
                elif at < pos - SYNC_TOLERANCE * rate:
                    cut = min(len(x), pos - at)
                    dropped, x = dropped + cut, x[cut:]
            elif pos is None:
                pos = first = 0
            pieces.append((pos, x))
            pos += len(x)
            if pos > (duration + MARGIN) * rate:
                stopped = True
                break
        if pos is None:
            error = decoded.first_error()
            raise MediaError(f"{path}: audio stream decoded to no samples" + (f" ({error})" if error else ""))
        end, bounded = _stream_end(c, stream, origin, pos / rate, stopped)
    # only up to the audio's end: the resampler's ringing stays out of the padding, as when the
    # models' tools resample a short file
    n_src = min(int(np.ceil((duration + MARGIN) * rate)), max(pos, 0))
    buf = np.zeros(n_src, np.float32)
    for p, x in pieces:
        a, b = max(p, 0), min(p + len(x), n_src)
        if a < b:
            buf[a:b] = x[a - p : b - p]
    y = resample(buf, rate, sr, resampler)
    n = int(round(duration * sr))
    y = np.ascontiguousarray(y[:n]) if len(y) >= n else np.pad(y, (0, n - len(y)))
    start = max(first, 0) / rate
    return Audio(
        y,
        sr,
        max(0.0, end - start),
        rate,
        channels,
        decoded.first_error(),
        start_seconds=start,
        gap_seconds=gap / rate,
        dropped_seconds=dropped / rate,
        decode_errors=len(decoded.errors),
        resampler=resampler,
        file=str(path),
        length_is_lower_bound=bounded,
        peak=float(np.abs(y).max()) if len(y) else 0.0,
    )


# --- frames -------------------------------------------------------------------------------


def frame_times(per_second: int, duration: float = SEGMENTS) -> np.ndarray:
    """Sampling instants: the centres of ``per_second`` equal slots in each second."""
    return (np.arange(int(duration * per_second)) + 0.5) / per_second


def _sample_aspect(stream) -> Fraction:
    """The container's pixel aspect, else the bitstream's; 1 when unset or implausible."""
    for sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if sar and Fraction(1, 8) <= sar <= 8:
            return Fraction(sar)
    return Fraction(1)


def _display(frame, sar: Fraction) -> tuple[float, float]:
    """(width, height) of the frame as shown: pixel aspect applied, then upright."""
    w, h = frame.width * sar, frame.height
    return (h, w) if round(getattr(frame, "rotation", 0) / 90) % 2 else (w, h)


def _picture(frame, size: tuple[int, int], sar: Fraction, fit: str, interpolation=None) -> np.ndarray:
    """RGB [h, w, 3] of the frame as displayed (upright, pixel aspect applied) fitted to ``size``."""
    w, h = size
    turns = round(getattr(frame, "rotation", 0) / 90) % 4
    if fit == "stretch":  # a separable resize: the pixel aspect changes nothing here
        tw, th = w, h
    else:
        dw, dh = _display(frame, sar)
        s = (max if fit == "crop" else min)(w / dw, h / dh)
        tw, th = max(1, round(float(dw * s))), max(1, round(float(dh * s)))
    if turns % 2:  # a quarter turn swaps the axes: resize to the transposed size first
        img = frame.to_ndarray(width=th, height=tw, format="rgb24", interpolation=interpolation)
    else:
        img = frame.to_ndarray(width=tw, height=th, format="rgb24", interpolation=interpolation)
    if turns:
        img = np.rot90(img, turns)
    if fit == "crop":
        y, x = (th - h) // 2, (tw - w) // 2
        img = img[y : y + h, x : x + w]
    elif fit == "pad":
        canvas = np.zeros((h, w, 3), np.uint8)
        y, x = (h - th) // 2, (w - tw) // 2
        canvas[y : y + th, x : x + tw] = img
        img = canvas
    return np.ascontiguousarray(img)


def load_frames(
    path: str | Path,
    per_second: int,
    size: tuple[int, int],
    duration: float = SEGMENTS,
    fit: str = "stretch",
    interpolation: str | None = None,
) -> Frames:
    """Upright RGB frames shown at each sampling instant, at display geometry, fitted to ``size``
    = (width, height) as ``fit`` says (see FITS), resized by swscale with ``interpolation`` (a name
    of ``av.video.reformatter.Interpolation``, e.g. BICUBIC; None: PyAV's default, BILINEAR).

    Decoded with frame threads; a stream that reports an error, or ends with fewer frames than
    packets, is decoded again single-threaded, since frame threading loses the frames around a
    damaged packet, sometimes without reporting it."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {sorted(FITS)}, got {fit!r}")
    frames, complete = _load_frames(Path(path), per_second, size, duration, fit, interpolation, threads=True)
    if not complete:
        frames, _ = _load_frames(Path(path), per_second, size, duration, fit, interpolation, threads=False)
        frames.single_threaded = True
    return frames


def _load_frames(
    path: Path, per_second: int, size: tuple[int, int], duration: float, fit: str, interpolation, threads: bool
) -> tuple[Frames, bool]:
    targets = frame_times(per_second, duration)
    out = [None] * len(targets)
    with _open(path) as c:
        stream, audio = _streams(c)
        if stream is None:
            cover = " (only a cover picture)" if c.streams.video else ""
            raise MediaError(f"{path}: no video stream{cover}")
        origin = _origin(c, stream, audio)
        if threads:
            stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        source_size = (stream.codec_context.width, stream.codec_context.height)
        decoded = _Decoded(c, stream, origin)
        j, last, first, last_end, rotation, stopped = 0, None, None, 0.0, 0, False
        sar, display = Fraction(1), (0, 0)
        for frame in decoded:
            ts = frame.pts if frame.pts is not None else frame.dts
            if ts is None:
                continue
            t = float(ts * stream.time_base) - origin
            # every target instant before this frame's start shows the previous frame
            while j < len(targets) and targets[j] < t and last is not None:
                out[j] = last
                j += 1
            if j >= len(targets):
                stopped = True
                break
            if first is None:
                first, sar = t, _sample_aspect(stream)
                display = tuple(int(round(float(v))) for v in _display(frame, sar))
            rotation = round(getattr(frame, "rotation", 0) / 90) % 4 * 90
            last = _picture(frame, size, sar, fit, interpolation)
            if frame.duration:
                last_end = t + float(frame.duration * stream.time_base)
            else:
                last_end = t + (1 / fps if fps else 0.0)
        if last is None:
            error = decoded.first_error()
            raise MediaError(f"{path}: video stream decoded to no frames" + (f" ({error})" if error else ""))
        end, bounded = _stream_end(c, stream, origin, last_end, stopped)
    complete = not threads or not (decoded.errors or (decoded.ended and decoded.frames < decoded.packets))
    held = 0
    for k in range(j, len(targets)):
        out[k] = last
        held += targets[k] >= last_end
    lead = int((targets < first).sum())
    frames = Frames(
        np.stack(out),
        targets,
        max(0.0, end - first),
        int(held),
        fps,
        source_size,
        rotation,
        decoded.first_error(),
        start_seconds=first,
        lead=lead,
        sample_aspect_ratio=float(sar),
        display_size=display,
        decode_errors=len(decoded.errors),
        fit=fit,
        file=str(path),
        length_is_lower_bound=bounded,
        clip_seconds=duration,
    )
    return frames, complete
