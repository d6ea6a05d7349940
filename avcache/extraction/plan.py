"""What extracting will cost, before paying it: for the configured dataset and the selected
extractors (params.yaml ``audio`` / ``visual``), the videos and frames, estimated FLOPs, the size
of each cache and of its work folder, and the time on this machine from a few timed videos.

    python -m avcache plan                      # both selected extractors, 2 timed videos each
    python -m avcache plan visual --time 4      # one modality, more timed videos
    python -m avcache plan --dataset features/dataset.h5 --time 0   # no model loaded: counts only

FLOPs (multiply and add counted as 2): PyTorch models are measured on one timed video with
``torch.utils.flop_counter`` (convolutions, matmuls, attention); TensorFlow models use the
published multiply-add count of their default input (class attribute ``flops_per_frame`` /
``flops_per_second``, doubled), scaled with the input area for convnets. Times: the median of
the timed videos after one warm-up, decode and model separately, with their range (one
video's time varies with the machine's load, so 2 timed videos are not enough), extrapolated
for the serial engine, the pipelined one (decoding hidden behind the model when workers can
keep up) and the Ray engine (one actor's throughput with ``extract.ray.decode_workers``, times
the actors: ``extract.ray.workers`` or ``--actors``). Without the videos at hand (a dataset
file built elsewhere), synthetic demo clips decoded at the dataset's length are timed instead:
FLOPs, row shapes and sizes do not depend on the content, decode times do, and the plan says
so. Warns when a cache plus its work folder (both exist while the cache is written) will not fit
the free disk.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avcache import media
from avcache.contract import params as P
from avcache.contract.dataset import SEGMENTS, DatasetError, read_dataset
from avcache.contract.io import counted
from avcache.contract.params import ExtractParams
from avcache.extraction import engine, extractors
from avcache.extraction.reduce import make_reduction
from avcache.extraction.stage import video_path


def human(n: float, unit: str = "B") -> str:
    for prefix in ("", "k", "M", "G", "T", "P", "E"):
        if abs(n) < 1000:
            return f"{n:.3g} {prefix}{unit}".rstrip()
        n /= 1000
    return f"{n:.3g} Z{unit}"


def duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def published_flops(extractor, seconds: int) -> float | None:
    """FLOPs per video from the class's published count (TensorFlow models), or None."""
    if getattr(extractor, "flops_per_frame", None):
        per_frame, size = extractor.flops_per_frame
        area = np.prod(extractor.image_size) / (size * size)
        return per_frame * area * extractor.frames_per_second * seconds
    per_second = getattr(extractor, "flops_per_second", None)
    return per_second * seconds if per_second else None


def time_videos(extractor, reduction, paths: list[Path], seconds: int = SEGMENTS):
    """(decode s, model s, FLOPs or None, a row): per-video times over ``paths`` (the first is a
    warm-up, not counted unless alone)."""
    decode_s, model_s, flops, row = [], [], None, None
    for k, path in enumerate(paths):
        t0 = time.perf_counter()
        decoded = extractor.decoder()(path, duration=seconds)
        t1 = time.perf_counter()
        counter = None
        if k == 0 and extractor.device and not extractor.device.startswith("/"):  # a PyTorch model
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with counter:
                result = engine.finish(extractor, reduction, decoded, seconds)
            flops = counter.get_total_flops()
        else:
            result = engine.finish(extractor, reduction, decoded, seconds)
        t2 = time.perf_counter()
        row = result.values
        if k > 0 or len(paths) == 1:
            decode_s.append(t1 - t0)
            model_s.append(t2 - t1)
    return decode_s, model_s, flops, row


def spread(times: list[float]) -> str:
    return f"{min(times):.2f}-{max(times):.2f}" if len(times) > 1 else "one video"


def synthetic_videos(folder: Path, n: int, seconds: int) -> list[Path]:
    """``n`` demo clips of ``seconds`` s: the shapes and FLOPs of real ones, not their decode time."""
    from avcache.datasets import demo

    clips = demo.generate(folder, videos=max(n, 2), classes=2, seed=0, progress=False)
    return [folder / "AVE" / f"{c.video_id}.mp4" for c in clips][:n]


def ray_estimate(d: float, m: float, videos: int, ray, actors: int | None) -> str:
    """The Ray engine's time: one actor's throughput (its ``decode_workers`` decoding ahead of its
    model, as measured here) times the actors; the actors' hardware is assumed to be this machine's."""
    dw = ray.decode_workers
    per_video = max(m, d / dw) if dw else d + m
    n = actors or ray.workers
    head = f"Ray engine: {1 / per_video:.2f} videos/s per actor ({counted(dw, 'decode worker')}, hardware like this)"
    if not n:
        return f"{head}; with N actors about {duration(per_video * videos)} / N (set --actors or extract.ray.workers)"
    return f"{head} x {n} actors -> about {duration(per_video * videos / n)}"


def plan_one(
    modality, name, options, settings, dataset, out_dir: Path, n_time: int, actors: int | None = None
) -> list[str]:
    options = dict(options)
    reduction_cfg = options.pop("reduction", None)
    options.pop("storage", None)  # how the cache is stored: no bearing on the time
    reduction = make_reduction(reduction_cfg)
    cls = extractors.get(name)
    ids = dataset.video_ids
    unique = list(dict.fromkeys(ids))
    lines = [f"{modality}/{name}: {counted(len(ids), 'video')} ({counted(len(unique), 'file')})"]
    if hasattr(cls, "import_cache"):
        return lines + ["  released features: imported, nothing is decoded or computed"]
    if n_time <= 0:
        return lines + ["  (--time 0: no model loaded; run with --time N for FLOPs, sizes and times)"]
    extractor = extractors.create(name, options, settings.device, settings.precision)
    seconds = dataset.max_seconds  # every clip is decoded to this length (SEGMENTS s for AVE)
    if modality == "visual":
        frames = len(unique) * extractor.frames_per_second * seconds
        lines.append(
            f"  frames: {human(frames, '')} ({extractor.frames_per_second}/s at "
            f"{extractor.image_size[0]}x{extractor.image_size[1]})"
        )
    else:
        lines.append(f"  audio: {human(len(unique) * seconds, '')} s at {extractor.sample_rate} Hz")
    paths = []
    relative = dict(zip(ids, dataset.relative_paths()))
    for vid in unique:
        try:
            paths.append(video_path(dataset.videos, vid, relative[vid]))
        except media.MediaError:
            continue
        if len(paths) > n_time:
            break
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = not paths
        if synthetic:
            paths = synthetic_videos(Path(tmp), n_time + 1, seconds)
            lines.append(
                f"  no video of the dataset found in {dataset.videos}: timing {len(paths)} synthetic demo "
                f"clips decoded as {seconds} s (FLOPs and sizes as for real videos; decode times are not)"
            )
        decode_s, model_s, flops, row = time_videos(extractor, reduction, paths, seconds)
    d, m = statistics.median(decode_s), statistics.median(model_s)
    if flops:
        how = "measured (torch flop counter)"
    else:
        flops, how = published_flops(extractor, seconds), "published count"
    if flops:
        lines.append(f"  compute: {human(flops * len(unique), 'FLOP')} ({human(flops, 'FLOP')} per video, {how})")
    else:
        lines.append("  compute: no FLOP count for this model")
    if reduction.needs_fit:
        reduced = (*row.shape[:-1], reduction_cfg["dim"])
    else:
        reduced = row.shape
    cache = len(ids) * int(np.prod(reduced)) * 4 + len(ids) * 20 * 8
    work = len(ids) * (int(np.prod(row.shape)) * 4 + 2048)
    lines.append(
        f"  cache: {human(cache)} ({len(ids)} x {list(reduced)} float32)   work folder: "
        f"{human(work)} ({list(row.shape)} per video before the reduction)"
    )
    serial = (d + m) * len(unique)
    workers = engine.decode_workers(settings.decode_workers)
    piped = max(m, d / workers) * len(unique) if workers else serial
    what = "synthetic" if synthetic else "timed"
    lines.append(
        f"  time on this machine ({extractor.runtime()['device']}, {settings.precision}; "
        f"{counted(len(model_s), what + ' video')}, median, range in brackets): decode {d:.2f} s "
        f"({spread(decode_s)}) + model {m:.2f} s ({spread(model_s)}) per video -> serial {duration(serial)}, "
        f"pipelined ({counted(workers, 'decode worker')}) about {duration(piped)}"
    )
    lines.append("  " + ray_estimate(d, m, len(unique), settings.ray, actors))
    free = shutil.disk_usage(out_dir if out_dir.exists() else Path(".")).free
    if cache + work > free:
        lines.append(
            f"  WARNING: the cache and its work folder need {human(cache + work)} but only "
            f"{human(free)} is free under {out_dir}: free space or choose a reduction first"
        )
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "modality",
        nargs="?",
        choices=["audio", "visual", "both"],
        default="both",
        help="both: those of params `inputs`",
    )
    ap.add_argument(
        "--dataset",
        default="features/dataset.h5",
        help="the dataset file; when missing, params.yaml `dataset` is read directly",
    )
    ap.add_argument("--time", type=int, default=4, metavar="N", help="videos to time (after one warm-up)")
    ap.add_argument("--actors", type=int, metavar="N", help="Ray actors to estimate for (default: extract.ray.workers)")
    ap.add_argument("--out", default="features", help="where the caches go (for the disk check)")
    a = ap.parse_args(argv)
    try:
        cfg = P.load()
        settings = P.from_params(ExtractParams, cfg.get("extract"), "extract")
        if Path(a.dataset).is_file():
            dataset = read_dataset(a.dataset)
        else:  # what the dataset stage would write, in any dataset.format
            from avcache.datasets.stage import DatasetParams, load

            dataset = load(P.from_params(DatasetParams, cfg.get("dataset"), "dataset"))
        print(
            f"dataset: {counted(len(dataset.video_ids), 'video')} in {dataset.videos}; extract: device "
            f"{settings.device}, precision {settings.precision}, engine {settings.engine}"
        )
        for modality in P.selected_inputs(cfg) if a.modality == "both" else [a.modality]:
            name = cfg.get(modality)
            options = P.section(cfg, f"extractors.{name}")
            print(
                "\n".join(
                    plan_one(modality, name, options, settings, dataset, Path(a.out) / modality, a.time, a.actors)
                )
            )
    except (extractors.WeightsNotFound, extractors.DeviceError, DatasetError, ValueError) as e:
        raise SystemExit(f"avcache.extraction.plan: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
