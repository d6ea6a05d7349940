"""Decode a video's audio track and sampled frames with PyAV, one pass per stream.

Clips are cut to exactly ``duration`` seconds: audio is zero-padded or trimmed, frames past the
end of the video repeat the last decoded frame, frames with a display rotation are turned
upright. A stream that breaks off mid-file keeps what decoded before the break. Everything done
to a clip is returned (``facts()`` numbers for the cache, ``notes()`` sentences for the report),
so caches record it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

CLIP_SECONDS = 10
MARGIN = 1.0  # seconds decoded past the clip, enough to know the clip was trimmed
NOTE_AFTER = 0.1  # seconds of padding / trimming worth a note (AAC alone adds ~0.03 s)


class MediaError(RuntimeError):
    """A video cannot be decoded as needed; the message names the file and the problem."""


@dataclass
class Audio:
    samples: np.ndarray  # [duration * sr] float32 mono
    sr: int
    source_seconds: float  # decoded length before padding / trimming
    source_rate: int = 0
    source_channels: int = 0
    decode_error: str | None = None

    @property
    def padded_seconds(self) -> float:
        return max(0.0, len(self.samples) / self.sr - self.source_seconds)

    @property
    def trimmed_seconds(self) -> float:
        return max(0.0, self.source_seconds - len(self.samples) / self.sr)

    def facts(self) -> dict[str, float]:
        return {"source_seconds": self.source_seconds, "padded_seconds": self.padded_seconds,
                "trimmed_seconds": self.trimmed_seconds, "source_rate": self.source_rate,
                "source_channels": self.source_channels, "partial": float(self.decode_error is not None)}

    def notes(self) -> list[str]:
        out = []
        if self.decode_error:
            out.append(f"audio decoding stopped after {self.source_seconds:.2f} s: {self.decode_error}")
        if self.padded_seconds > NOTE_AFTER:
            out.append(f"audio padded with {self.padded_seconds:.2f} s of silence "
                       f"({self.source_seconds:.2f} s decoded)")
        if self.trimmed_seconds > NOTE_AFTER:
            out.append(f"audio trimmed to {len(self.samples) / self.sr:g} s (at least "
                       f"{self.source_seconds:.2f} s in the file)")
        if 0 < self.source_rate < self.sr:
            out.append(f"audio upsampled {self.source_rate} -> {self.sr} Hz "
                       f"(nothing above {self.source_rate // 2} Hz)")
        if self.source_channels > 2:
            out.append(f"audio downmixed from {self.source_channels} channels")
        return out


@dataclass
class Frames:
    images: np.ndarray  # [n, h, w, 3] uint8 RGB, upright
    times: np.ndarray  # [n] seconds, the instant each frame was sampled at
    source_seconds: float  # end of the last decoded frame
    held: int  # sampled instants after the video's end (filled with its last frame)
    source_fps: float = 0.0
    source_size: tuple[int, int] = (0, 0)  # (width, height) as stored
    rotation: int = 0  # degrees counter-clockwise applied to make frames upright
    decode_error: str | None = None

    def facts(self) -> dict[str, float]:
        return {"source_seconds": self.source_seconds, "held_frames": self.held,
                "source_fps": self.source_fps, "source_width": self.source_size[0],
                "source_height": self.source_size[1], "rotation": self.rotation,
                "partial": float(self.decode_error is not None)}

    def notes(self) -> list[str]:
        out = []
        if self.decode_error:
            out.append(f"video decoding stopped after {self.source_seconds:.2f} s: {self.decode_error}")
        if self.held:
            out.append(f"{self.held} of {len(self.times)} sampled frames repeat the last frame "
                       f"(video ends at {self.source_seconds:.2f} s)")
        if self.rotation:
            out.append(f"frames rotated {self.rotation} degrees to upright (display matrix)")
        return out


def _open(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise MediaError(f"{path}: cannot open container, the file is corrupt, truncated or "
                         f"not a media file ({e})") from None


def load_audio(path: str | Path, sr: int, duration: float = CLIP_SECONDS) -> Audio:
    """Mono float32 at ``sr`` Hz, exactly ``duration`` s (FFmpeg's resampler downmixes and resamples)."""
    with _open(path) as c:
        if not c.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        stream = c.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate or 0, stream.codec_context.channels or 0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks, got, error, stopped = [], 0, None, False
        try:
            for frame in c.decode(stream):
                frame.pts = None
                for f in resampler.resample(frame):
                    chunks.append(f.to_ndarray().reshape(-1))
                    got += len(chunks[-1])
                if got > (duration + MARGIN) * sr:
                    stopped = True
                    break
            if not stopped:
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.error.FFmpegError as e:
            error = str(e)
        container_seconds = c.duration / av.time_base if c.duration else 0.0
    x = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not len(x):
        raise MediaError(f"{path}: audio stream decoded to no samples" + (f" ({error})" if error else ""))
    n = int(round(duration * sr))
    source_seconds = len(x) / sr
    if stopped:  # decoding stopped early on purpose: the container says how long the file is
        source_seconds = max(source_seconds, container_seconds)
    x = np.pad(x[:n], (0, max(0, n - len(x))))
    return Audio(x, sr, source_seconds, rate, channels, error)


def frame_times(per_second: int, duration: float = CLIP_SECONDS) -> np.ndarray:
    """Sampling instants: the centres of ``per_second`` equal slots in each second."""
    return (np.arange(int(duration * per_second)) + 0.5) / per_second


def _upright(frame, width: int, height: int) -> np.ndarray:
    """RGB array of ``frame`` resized to (width, height) after undoing its display rotation."""
    turns = round(getattr(frame, "rotation", 0) / 90) % 4
    if turns % 2:  # a quarter turn swaps the axes: resize to the transposed size first
        img = frame.to_ndarray(width=height, height=width, format="rgb24")
    else:
        img = frame.to_ndarray(width=width, height=height, format="rgb24")
    return np.ascontiguousarray(np.rot90(img, turns)) if turns else img


def load_frames(path: str | Path, per_second: int, size: tuple[int, int],
                duration: float = CLIP_SECONDS) -> Frames:
    """Upright RGB frames shown at each sampling instant, resized to ``size`` = (width, height)."""
    targets = frame_times(per_second, duration)
    out = [None] * len(targets)
    width, height = size
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        source_size = (stream.codec_context.width, stream.codec_context.height)
        j, last, last_end, rotation, error = 0, None, 0.0, 0, None
        try:
            for frame in c.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base) - start
                # every target instant before this frame's start shows the previous frame
                while j < len(targets) and targets[j] < t and last is not None:
                    out[j] = last
                    j += 1
                if j >= len(targets):
                    break
                rotation = round(getattr(frame, "rotation", 0) / 90) % 4 * 90
                last = _upright(frame, width, height)
                if frame.duration:
                    last_end = t + float(frame.duration * stream.time_base)
                else:
                    last_end = t + (1 / fps if fps else 0.0)
        except av.error.FFmpegError as e:
            error = str(e)
    if last is None:
        raise MediaError(f"{path}: video stream decoded to no frames" + (f" ({error})" if error else ""))
    held = 0
    for k in range(j, len(targets)):
        out[k] = last
        held += targets[k] >= last_end
    return Frames(np.stack(out), targets, last_end, int(held), fps, source_size, rotation, error)
