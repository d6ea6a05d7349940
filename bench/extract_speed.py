"""Seconds per video for each stage of extraction (decode, embed) on the shared 10-s clip.

    python bench/extract_speed.py [--repeat 3] [--fps 4 16]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from extract import extractors  # noqa: E402

CLIP = Path(__file__).resolve().parents[2] / "shared/data/clips/llp_BjCEufrlXm4_speech_dog_10s.mp4"


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fps", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--clip", default=str(CLIP))
    a = ap.parse_args()
    rows = []
    configs = [("musicnn", {})] + [("efficientnet", {"frames_per_second": k}) for k in a.fps]
    for name, opts in configs:
        ex = extractors.create(name, opts)
        ex(ex.decode(a.clip))  # warm-up
        decoded, t_dec = timed(lambda: ex.decode(a.clip), a.repeat)
        _, t_emb = timed(lambda: ex(decoded), a.repeat)
        rows.append((name, str(opts or ""), t_dec, t_emb))
    print(f"{'extractor':<14}{'options':<28}{'decode s':>10}{'embed s':>10}{'total s/video':>15}")
    for name, opts, d, e in rows:
        print(f"{name:<14}{opts:<28}{d:>10.3f}{e:>10.3f}{d + e:>15.3f}")


if __name__ == "__main__":
    main()
