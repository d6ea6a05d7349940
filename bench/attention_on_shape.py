"""Does the trained model's visual attention look at the sounding object? Measured on the demo,
where the generator knows where the shape is in every frame.

    dvc repro && python bench/attention_on_shape.py      # the workspace's models and caches

For every test second where the shape is on screen, the regions of the visual cache's grid that
the shape's disc overlaps are its cells; the attention mass on them (the best-on-val seed's) is
compared with the mass uniform attention would put there (their share of the grid). Split by
the second's label: event seconds (seen and heard) and visual-only distractor seconds (seen,
silent), where audio-guided attention has no sound to follow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avcache.contract import params as P  # noqa: E402
from avcache.contract.cache import read_provenance  # noqa: E402
from avcache.contract.dataset import read_dataset  # noqa: E402
from avcache.datasets import demo  # noqa: E402
from avcache.localization.attention import attention_on_test  # noqa: E402


def shape_cells(centres: np.ndarray, r: float, width: int, height: int, grid: tuple[int, int]) -> np.ndarray:
    """[len(centres), gh * gw] bool: the grid cells (of a frame stretched to the grid) that the disc
    of radius ``r`` around each centre overlaps."""
    gh, gw = grid
    x0, y0 = np.arange(gw) * width / gw, np.arange(gh) * height / gh
    out = np.zeros((len(centres), gh, gw), bool)
    for k, (cx, cy) in enumerate(centres):
        dx = np.maximum(np.maximum(x0 - cx, cx - (x0 + width / gw)), 0)  # distance from centre to cell
        dy = np.maximum(np.maximum(y0 - cy, cy - (y0 + height / gh)), 0)
        out[k] = dy[:, None] ** 2 + dx[None, :] ** 2 < r**2
    return out.reshape(len(centres), -1)


def measure(dataset: Path, audio: Path, visual: Path, models_dir: Path, demo_cfg: dict) -> dict:
    ds = read_dataset(dataset)
    training, best, grid, _, rows, _, alpha = attention_on_test(ds, audio, visual, models_dir)
    alpha = alpha.reshape(len(rows), 10, -1)
    _, clips = demo.plan(demo_cfg["videos"], demo_cfg["classes"], demo_cfg["seed"], demo_cfg["distractor_prob"])
    by_id = {c.video_id: c for c in clips}
    fps = read_provenance(visual).get("decoding", {}).get("frames_per_second", 4)
    w, h = demo_cfg["width"], demo_cfg["height"]
    found = {"event": [], "visual_only": []}
    for k, row in enumerate(rows):
        clip = by_id[ds.video_ids[row]]
        for t in range(10):
            if clip.visual[t] < 0:
                continue
            times = t + np.arange(fps) / fps  # the frames pooled into this second
            centres, r = demo.shape_track(clip, w, h, times)
            cells = shape_cells(centres, r, w, h, grid).any(0)
            kind = "event" if clip.audio[t] == clip.visual[t] else "visual_only"
            found[kind].append((alpha[k, t, cells].sum(), cells.mean()))
    out = {"model": training["model"], "seed": best["seed"], "grid": list(grid), "test_videos": len(rows)}
    for kind, pairs in found.items():
        if pairs:
            mass, share = np.array(pairs).T
            out[kind] = {
                "seconds": len(pairs),
                "attention_on_shape": round(float(mass.mean()), 4),
                "uniform_would_give": round(float(share.mean()), 4),
                "ratio": round(float(mass.mean() / share.mean()), 2),
                "seconds_above_uniform": round(float((mass > share).mean()), 4),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=Path("models"))
    a = ap.parse_args()
    cfg = P.load()
    result = measure(
        Path("features/dataset.h5"),
        Path(f"features/audio/{cfg['audio']}.h5"),
        Path(f"features/visual/{cfg['visual']}.h5"),
        a.models,
        cfg["demo"],
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
