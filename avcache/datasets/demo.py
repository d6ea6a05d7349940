"""A synthetic dataset in AVE's own format, generated deterministically from a seed.

Each class is a visual pattern (a coloured shape moving over a cluttered background) and a sound
(a synthetic timbre over background noise). As in AVE, a second carries the event label only
where its class is both seen and heard; other seconds are background, including *distractor*
seconds where only one modality shows a class (the shape without its sound, or the sound
off-screen). A unimodal model cannot tell those from events; an audio-visual one can.

    python -m avcache demo                # the DVC stage: reads params.yaml `demo`, writes data/demo
    python -m avcache demo clip_demo      # the clip-classification demo: params.yaml `clip_demo`, data/clip_demo
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avcache.contract import params as P
from avcache.contract.dataset import SEGMENTS
from avcache.contract.io import counted
from avcache.datasets.ave import SPLIT_FILES

# name, shape, RGB colour, sound
CLASSES = [
    ("Red disc beeping", "disc", (230, 40, 40), "beep"),
    ("Green square chirping", "square", (40, 210, 60), "chirp"),
    ("Blue triangle warbling", "triangle", (50, 80, 240), "warble"),
    ("Yellow cross hissing", "cross", (240, 220, 30), "hiss"),
    ("Magenta ring buzzing", "ring", (220, 40, 220), "buzz"),
    ("Cyan stripes wailing", "stripes", (30, 220, 230), "siren"),
    ("Orange diamond knocking", "diamond", (250, 140, 20), "knock"),
    ("White checker chiming", "checker", (245, 245, 245), "chord"),
]


@dataclass
class Clip:
    video_id: str
    cls: int
    start: int
    end: int
    visual: np.ndarray  # [10] class shown in each second, -1 for none
    audio: np.ndarray  # [10] class heard in each second, -1 for none
    seed: int = 0  # the video's own random stream (render_video, render_audio, shape_track)


def plan_clip(rng: np.random.Generator, video_id: str, cls: int, n_classes: int, distractor_prob: float) -> Clip:
    """Event interval plus distractor runs where only one modality shows a class."""
    length = int(rng.integers(2, SEGMENTS + 1))
    start = int(rng.integers(0, SEGMENTS - length + 1))
    visual = np.full(SEGMENTS, -1)
    audio = np.full(SEGMENTS, -1)
    visual[start : start + length] = audio[start : start + length] = cls
    free = [t for t in range(SEGMENTS) if not start <= t < start + length]
    for track in rng.permutation(2):
        if not free or rng.random() >= distractor_prob:
            continue
        run = int(rng.integers(1, min(3, len(free)) + 1))
        first = int(rng.integers(0, len(free) - run + 1))
        secs = free[first : first + run]
        other = int(rng.integers(0, n_classes))
        (visual if track == 0 else audio)[secs] = cls if rng.random() < 0.5 else other
        free = [t for t in free if t not in secs]  # runs never overlap: no accidental event
    return Clip(video_id, cls, start, start + length, visual, audio)


def _shape_mask(shape: str, xx, yy, cx, cy, r):
    dx, dy = xx - cx, yy - cy
    d = np.hypot(dx, dy)
    box = (np.abs(dx) < r) & (np.abs(dy) < r)
    return {
        "disc": d < r,
        "square": box,
        "triangle": (dy < r) & (np.abs(dx) < (dy + r) / 2),
        "cross": ((np.abs(dx) < r / 3) & (np.abs(dy) < r)) | ((np.abs(dy) < r / 3) & (np.abs(dx) < r)),
        "ring": (d < r) & (d > r / 2),
        "stripes": box & (np.sin(dy * np.pi / (r / 3)) > 0),
        "diamond": np.abs(dx) + np.abs(dy) < r,
        "checker": box & ((np.floor(dx / (r / 2)) + np.floor(dy / (r / 2))) % 2 == 0),
    }[shape]


class _Motion:
    """Where the shape is: radius ``r`` and a straight path bouncing off the frame's edges."""

    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.size = np.array([width, height], float)
        self.r = rng.uniform(0.22, 0.3) * min(width, height)
        self.pos = rng.uniform([self.r, self.r], [width - self.r, height - self.r])
        self.vel = rng.uniform(-25, 25, 2)

    def centre(self, t: float) -> np.ndarray:
        span = self.size - 2 * self.r
        q = (self.pos - self.r + self.vel * t) % (2 * span)
        return self.r + np.minimum(q, 2 * span - q)


def _scene(rng: np.random.Generator, width: int, height: int):
    """The draws every video makes first, in order: background, a drifting blob, the shape's motion."""
    base, tilt = rng.uniform(30, 120, 3), rng.uniform(-40, 40, 3)
    blob_c, blob_v = rng.uniform([0, 0], [width, height]), rng.uniform(-6, 6, 2)
    return base, tilt, blob_c, blob_v, _Motion(rng, width, height)


def shape_track(clip: Clip, width: int, height: int, times: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre [len(times), 2] in pixels, radius) of the clip's shape at ``times`` seconds: what the
    attention maps are checked against."""
    motion = _scene(np.random.default_rng(clip.seed), width, height)[-1]
    return np.stack([motion.centre(t) for t in times]), motion.r


def render_video(clip: Clip, rng: np.random.Generator, width: int, height: int, fps: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base, tilt, blob_c, blob_v, motion = _scene(rng, width, height)
    background = base + tilt * (xx / width)[..., None] + (tilt[::-1] * (yy / height)[..., None]) / 2
    frames = np.empty((len(clip.visual) * fps, height, width, 3), np.uint8)
    for k in range(len(frames)):
        t = k / fps
        img = background.copy()
        bc = blob_c + blob_v * t
        img += 40 * np.exp(-((xx - bc[0]) ** 2 + (yy - bc[1]) ** 2) / (2 * (0.3 * width) ** 2))[..., None]
        img += rng.normal(0, 3, img.shape[:2])[..., None]
        c = clip.visual[int(t)]
        if c >= 0:
            p = motion.centre(t)
            _, shape, colour, _ = CLASSES[c]
            img[_shape_mask(shape, xx, yy, p[0], p[1], motion.r)] = colour
        frames[k] = np.clip(img, 0, 255)
    return frames


def _sound(kind: str, t: np.ndarray, rng: np.random.Generator, pitch: float) -> np.ndarray:
    f = pitch
    if kind == "beep":
        return np.sin(2 * np.pi * 440 * f * t) + 0.5 * np.sin(2 * np.pi * 880 * f * t)
    if kind == "chirp":
        ph = (t % 0.25) / 0.25
        return np.sin(2 * np.pi * (300 * f * ph * 0.25 + 0.5 * 1200 * f * ph**2 * 0.25))
    if kind == "warble":
        return np.sin(2 * np.pi * 1000 * f * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 6 * t))
    if kind == "hiss":
        n = rng.normal(0, 1, len(t))
        spec = np.fft.rfft(n)
        freqs = np.fft.rfftfreq(len(t), t[1] - t[0])
        spec[(freqs < 3000 * f) | (freqs > 6000 * f)] = 0
        return np.fft.irfft(spec, len(t)) * 4 * ((t * 5) % 1 < 0.6)
    if kind == "buzz":
        return sum(np.sin(2 * np.pi * 110 * f * h * t) / h for h in range(1, 12))
    if kind == "siren":
        return np.sin(2 * np.pi * (700 * f * t - 250 / (2 * np.pi * 1.5) * np.cos(2 * np.pi * 1.5 * t)))
    if kind == "knock":
        ph = (t * 4) % 1
        return np.sin(2 * np.pi * 180 * f * t) * np.exp(-ph * 25) * 2
    if kind == "chord":
        return sum(np.sin(2 * np.pi * fr * f * t) for fr in (523.3, 659.3, 784.0)) / 1.5
    raise ValueError(kind)


def render_audio(clip: Clip, rng: np.random.Generator, sr: int) -> np.ndarray:
    n = len(clip.audio) * sr
    t = np.arange(n) / sr
    spec = np.fft.rfft(rng.normal(0, 1, n)) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / sr), 50))
    pink = np.fft.irfft(spec, n)
    x = pink / pink.std() * 0.015 * rng.uniform(0.6, 1.4)
    pitch = rng.uniform(0.96, 1.04)
    ramp = np.minimum(1, np.minimum(np.arange(sr), np.arange(sr)[::-1]) / (0.01 * sr))
    sounds = {}
    for sec, c in enumerate(clip.audio):
        if c < 0:
            continue
        if c not in sounds:
            sounds[c] = _sound(CLASSES[c][3], t, rng, pitch) * rng.uniform(0.15, 0.3)
        x[sec * sr : (sec + 1) * sr] += sounds[c][sec * sr : (sec + 1) * sr] * ramp
    return np.clip(x, -1, 1).astype(np.float32)


def encode(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray, sr: int) -> None:
    """MPEG-4 Part 2 video + AAC audio in MP4, byte-reproducible.

    (libx264 from the PyAV wheel gave different bytes from run to run even single-threaded;
    FFmpeg's native mpeg4 encoder does not.)
    """
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("mpeg4", rate=fps, options={"qscale": "4"})
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.thread_count, vs.codec_context.thread_type = 1, "NONE"
        aus = out.add_stream("aac", rate=sr, layout="mono")
        for k, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        step = 1024
        for k in range(0, len(audio), step):
            frame = av.AudioFrame.from_ndarray(audio[None, k : k + step], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sr, k, Fraction(1, sr)
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))


def plan(videos: int, classes: int, seed: int, distractor_prob: float) -> tuple[np.random.Generator, list[Clip]]:
    """Every video's plan (class, event, distractors, seed) as ``generate`` draws it, without
    rendering: what a check of the demo needs (where the shape is), and the generator to go on."""
    rng = np.random.default_rng(seed)
    cls_of = np.sort(np.arange(videos) % classes)  # grouped by class, like AVE's Annotations.txt
    clips = [plan_clip(rng, f"demo{k:05d}", int(c), classes, distractor_prob) for k, c in enumerate(cls_of)]
    for clip, s in zip(clips, rng.integers(0, 2**63, len(clips))):
        clip.seed = int(s)
    return rng, clips


def _at_least_one(section: str, **counts) -> None:
    """A ValueError naming ``section.<key>`` for the first count below 1 (a demo of no videos is no demo)."""
    for key, value in counts.items():
        if value < 1:
            raise ValueError(f"{section}.{key} must be at least 1, got {value}")


def generate(
    out: str | Path,
    videos: int = 240,
    classes: int = 6,
    seed: int = 0,
    width: int = 160,
    height: int = 120,
    fps: int = 12,
    sample_rate: int = 22050,
    distractor_prob: float = 0.6,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    progress: bool = True,
) -> list[Clip]:
    """Write Annotations.txt, the three split files and AVE/<id>.mp4 under ``out``."""
    _at_least_one("demo", videos=videos, width=width, height=height, fps=fps, sample_rate=sample_rate)
    if not 2 <= classes <= len(CLASSES):
        raise ValueError(f"demo.classes must be in 2..{len(CLASSES)}, got {classes}")
    if len(split) != 3 or abs(sum(split) - 1) > 1e-6 or min(split) < 0:
        raise ValueError(f"demo.split must be three non-negative fractions summing to 1, got {list(split)}")
    out_dir = Path(out)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "AVE").mkdir(parents=True)
    rng, clips = plan(videos, classes, seed, distractor_prob)
    from tqdm import tqdm

    for clip in tqdm(clips, desc="demo videos", unit="video", disable=not progress):
        r = np.random.default_rng(clip.seed)
        encode(
            out_dir / "AVE" / f"{clip.video_id}.mp4",
            render_video(clip, r, width, height, fps),
            fps,
            render_audio(clip, r, sample_rate),
            sample_rate,
        )

    def line(c: Clip) -> str:
        return f"{CLASSES[c.cls][0]}&{c.video_id}&good&{c.start}&{c.end}\n"

    (out_dir / "Annotations.txt").write_text("".join(line(c) for c in clips))
    perm = rng.permutation(len(clips))
    n_train, n_val = int(round(split[0] * len(clips))), int(round(split[1] * len(clips)))
    parts = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}
    for s, fname in SPLIT_FILES.items():
        (out_dir / fname).write_text("".join(line(clips[i]) for i in sorted(parts[s])))
    return clips


def generate_clips(
    out: str | Path,
    clips: int = 150,
    classes: int = 5,
    seed: int = 0,
    width: int = 96,
    height: int = 72,
    fps: int = 8,
    sample_rate: int = 16000,
    min_seconds: int = 1,
    max_seconds: int = 5,
    folds: int = 5,
    per_source: int = 3,
    fidelity: float = 0.75,
    progress: bool = True,
) -> list[Clip]:
    """A clip-classification demo in the CSV layout: ``clips.csv`` (path,label,fold,group) and
    ``clips/<id>.mp4`` of ``min_seconds``..``max_seconds`` seconds, as in ESC-50 or UrbanSound8K.

    A clip's class is its label; each modality shows it in a second with probability
    ``fidelity`` and another class otherwise, so each modality alone is imperfect and both together
    do better. Clips come in sources of ``per_source`` clips (as ESC-50's ``src_file``), and a
    source's clips share one fold.
    """
    _at_least_one(
        "clip_demo",
        clips=clips,
        width=width,
        height=height,
        fps=fps,
        sample_rate=sample_rate,
        folds=folds,
        per_source=per_source,
    )
    if not 2 <= classes <= len(CLASSES):
        raise ValueError(f"clip_demo.classes must be in 2..{len(CLASSES)}, got {classes}")
    if not 1 <= min_seconds <= max_seconds:
        raise ValueError(f"clip_demo needs 1 <= min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    out_dir = Path(out)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "clips").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    planned, lines = [], ["path,label,fold,group\n"]
    sources = -(-clips // per_source)
    fold_of = rng.permutation(np.arange(sources) % folds) + 1
    for k in range(clips):
        source = k // per_source
        cls = source % classes
        n = int(rng.integers(min_seconds, max_seconds + 1))
        shown = [cls if rng.random() < fidelity else int(rng.integers(0, classes)) for _ in range(2 * n)]
        clip = Clip(f"clip{k:04d}", cls, 0, n, np.array(shown[:n]), np.array(shown[n:]))
        planned.append(clip)
        lines.append(f"clips/{clip.video_id}.mp4,{CLASSES[cls][0]},{fold_of[source]},source{source:03d}\n")
    for clip, s in zip(planned, rng.integers(0, 2**63, len(planned))):
        clip.seed = int(s)
    from tqdm import tqdm

    for clip in tqdm(planned, desc="clip demo", unit="clip", disable=not progress):
        r = np.random.default_rng(clip.seed)
        encode(
            out_dir / "clips" / f"{clip.video_id}.mp4",
            render_video(clip, r, width, height, fps),
            fps,
            render_audio(clip, r, sample_rate),
            sample_rate,
        )
    (out_dir / "clips.csv").write_text("".join(lines))
    return planned


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "name",
        nargs="?",
        choices=["demo", "clip_demo", "ave", "clips"],
        default="demo",
        help="demo (or ave): params `demo`, event localization; clip_demo (or clips): params `clip_demo`",
    )
    ap.add_argument("--out", help="the folder to write (default: data/<name>, what dvc.yaml's demos stage lists)")
    a = ap.parse_args(argv)
    section = {"ave": "demo", "clips": "clip_demo"}.get(a.name, a.name)
    make = generate if section == "demo" else generate_clips
    out = a.out or f"data/{section}"
    try:
        cfg = P.check_call(make, P.section(P.load(), section), section, skip=("progress", "out"))
        clips = make(out, **cfg)
    except (P.ParamsError, ValueError) as e:
        raise SystemExit(f"{section}: {e}") from None
    print(f"{section}: {counted(len(clips), 'video')} in {out}")


if __name__ == "__main__":
    main()
