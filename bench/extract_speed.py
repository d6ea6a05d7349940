"""Extraction speed: videos per second of the serial, pipelined and Ray engines on the demo,
and the model's throughput as a fraction of this machine's measured matmul peak.

    python bench/extract_speed.py                       # musicnn + efficientnet, 24 demo videos
    python bench/extract_speed.py --videos 48 --engines serial pipelined

Each (extractor, engine) runs the real stage (``avcache.extraction.stage.run``) on a freshly generated demo
(the params.yaml demo's geometry: 160x120 at 12 fps, 10 s) into its own folder; the caches of
all engines are checked byte-identical. Videos per second are steady-state: rows finished after
the first one, over the time since the first one, so model loading and Ray's start are left out
(shown separately as "start s"). The peak is the best of 5 fp32 4096^3 matmuls in PyTorch
(``torch.mm``, all cores) in FLOP/s; the model's FLOPs per video are counted with
``torch.utils.flop_counter`` (PyTorch models only), so "of peak" = FLOPs per video x videos per
second / peak. Run it on an idle machine: other jobs on the cores change every number.
"""

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import avcache.extraction  # noqa: E402,F401  (pins the portable kernels first, as every stage does)

ENGINES = {
    "serial": {"engine": "local", "decode_workers": 0},
    "pipelined": {"engine": "local", "decode_workers": 2},
    "ray": {"engine": "ray", "ray": {"cpus_per_worker": 2, "decode_workers": 1}},
}


def matmul_peak(n: int = 4096, repeat: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeat))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def flops_per_video(name, options, dataset) -> float | None:
    from torch.utils.flop_counter import FlopCounterMode

    from avcache.extraction import extractors
    from avcache.extraction import stage as run

    ex = extractors.create(name, {k: v for k, v in options.items() if k != "reduction"}, "cpu")
    if ex.device.startswith("/"):  # TensorFlow: no counter
        return None
    frames = ex.decode(run.video_path(dataset.videos, dataset.video_ids[0]))
    with FlopCounterMode(display=False) as counter:
        ex(frames)
    return counter.get_total_flops()


def run_stage(name, options, dataset, out, settings):
    """(videos/s after the first row, seconds to the first row)."""
    from avcache.extraction import extractors
    from avcache.extraction import stage as run

    stamps = []
    put, fail = run.WorkStore.put, run.WorkStore.fail

    def timed_put(self, *a):
        stamps.append(time.perf_counter())
        return put(self, *a)

    def timed_fail(self, *a):
        stamps.append(time.perf_counter())
        return fail(self, *a)

    run.WorkStore.put, run.WorkStore.fail = timed_put, timed_fail
    try:
        start = time.perf_counter()
        run.run(
            extractors.get(name).modality,
            name,
            options,
            dataset,
            dataset.videos,
            out,
            progress=False,
            device="cpu",
            **settings,
        )
    finally:
        run.WorkStore.put, run.WorkStore.fail = put, fail
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), stamps[0] - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--fps", type=int, default=4, help="EfficientNet-Lite0 frames per second (params.yaml: 4)")
    ap.add_argument("--extractors", nargs="+", default=["efficientnet", "musicnn"])
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    ap.add_argument("--decode-workers", type=int, default=2, help="the pipelined engine's (extract.decode_workers)")
    a = ap.parse_args()
    ENGINES["pipelined"]["decode_workers"] = a.decode_workers
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import torch

    from avcache.datasets import demo
    from avcache.datasets.ave import load_ave

    tmp = Path(tempfile.mkdtemp(prefix="extract-speed-"))
    try:
        demo.generate(tmp / "demo", videos=a.videos, classes=3, seed=0, progress=False)
        ds = load_ave(tmp / "demo", videos=tmp / "demo" / "AVE")
        peak = matmul_peak()
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads); fp32 matmul peak {peak / 1e9:.1f} GFLOP/s"
        )
        if "ray" in a.engines:
            from avcache.extraction import engine_ray

            t = time.perf_counter()
            engine_ray.connect(None)
            print(f"ray.init: {time.perf_counter() - t:.1f} s (not counted)")
        rows = []
        for name in a.extractors:
            options = {"frames_per_second": a.fps} if name == "efficientnet" else {}
            options["reduction"] = {"method": "none"}
            flops = flops_per_video(name, options, ds)
            digests = {}
            for eng in a.engines:
                out = tmp / name / eng / "cache.h5"
                vps, first = run_stage(name, options, ds, out, ENGINES[eng])
                digests[eng] = hashlib.sha256(out.read_bytes()).hexdigest()
                rows.append((name, eng, vps, first, flops * vps / peak if flops else None))
                print(f"  {name:<13} {eng:<10} {vps:6.2f} videos/s", flush=True)
            same = len(set(digests.values())) == 1
            print(f"  {name}: caches of {', '.join(digests)} {'byte-identical' if same else 'DIFFER'}")
            if not same:
                raise SystemExit("engines disagree: " + str(digests))
        print(
            f"\n{a.videos} demo videos (160x120, 12 fps, 10 s); efficientnet = Lite0 at {a.fps} frames/s, "
            "224 px, batch 32; musicnn = MTT_musicnn cnn1-3\n"
        )
        print("| extractor | engine | videos/s | s/video | vs serial | start s | model FLOP/s of peak |")
        print("|---|---|---|---|---|---|---|")
        for name, eng, vps, first, frac in rows:
            base = next((v for n, e, v, _, _ in rows if n == name and e == "serial"), None)
            ratio = f"{vps / base:.2f}x" if base else "-"
            print(
                f"| {name} | {eng} | {vps:.2f} | {1 / vps:.2f} | {ratio} | {first:.1f} | "
                f"{f'{100 * frac:.0f} %' if frac else 'n/a (TensorFlow)'} |"
            )
    finally:
        if "ray" in a.engines:
            import ray

            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
