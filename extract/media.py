"""Decode a video's audio track and sampled frames with PyAV, one pass per stream.

Clips are cut to exactly ``duration`` seconds: audio is zero-padded or trimmed, frames past the
end of the video repeat the last decoded frame. What was done is returned so caches can record it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

CLIP_SECONDS = 10


class MediaError(RuntimeError):
    """A video cannot be decoded as needed; the message names the file and the problem."""


@dataclass
class Audio:
    samples: np.ndarray  # [duration * sr] float32 mono
    sr: int
    source_seconds: float  # decoded length before padding / trimming

    @property
    def padded_seconds(self) -> float:
        return max(0.0, CLIP_SECONDS - self.source_seconds)


@dataclass
class Frames:
    images: np.ndarray  # [n, h, w, 3] uint8 RGB
    times: np.ndarray  # [n] seconds, the instant each frame was sampled at
    source_seconds: float  # time of the last decoded frame's end
    held: int  # sampled instants after the video's end (filled with its last frame)


def _open(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: cannot open container ({e})") from None


def load_audio(path: str | Path, sr: int, duration: float = CLIP_SECONDS) -> Audio:
    """Mono float32 at ``sr`` Hz, exactly ``duration`` s (FFmpeg's resampler downmixes and resamples)."""
    with _open(path) as c:
        if not c.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks = []
        try:
            for frame in c.decode(audio=0):
                frame.pts = None
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: audio decoding failed ({e})") from None
    x = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not len(x):
        raise MediaError(f"{path}: audio stream decoded to no samples")
    n = int(round(duration * sr))
    source_seconds = len(x) / sr
    x = np.pad(x[:n], (0, max(0, n - len(x))))
    return Audio(x, sr, source_seconds)


def frame_times(per_second: int, duration: float = CLIP_SECONDS) -> np.ndarray:
    """Sampling instants: the centres of ``per_second`` equal slots in each second."""
    return (np.arange(int(duration * per_second)) + 0.5) / per_second


def load_frames(path: str | Path, per_second: int, size: tuple[int, int],
                duration: float = CLIP_SECONDS) -> Frames:
    """RGB frames shown at each sampling instant, resized to ``size`` = (width, height)."""
    targets = frame_times(per_second, duration)
    out = [None] * len(targets)
    width, height = size
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        j, last, last_end = 0, None, 0.0
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
                last = frame.to_ndarray(width=width, height=height, format="rgb24")
                if frame.duration:
                    last_end = t + float(frame.duration * stream.time_base)
                else:
                    last_end = t + (1 / float(stream.average_rate) if stream.average_rate else 0.0)
        except av.error.FFmpegError as e:
            if last is None:
                raise MediaError(f"{path}: video decoding failed ({e})") from None
    if last is None:
        raise MediaError(f"{path}: video stream decoded to no frames")
    held = 0
    for k in range(j, len(targets)):
        out[k] = last
        held += targets[k] >= last_end
    return Frames(np.stack(out), targets, last_end, int(held))
