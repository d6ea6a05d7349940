"""Attention maps: where the audio-guided attention looks, drawn on the frames of test videos.

    python -m avcache attention --dataset features/dataset.h5 --audio ... --visual ... \
        --models models --out results/attention          # reads params.yaml `attention`

One PNG per chosen test video: ten columns (seconds), each the frame at the middle of the second
as the visual extractor saw it (its input size and fit, shown at the video's display aspect) with
the attention over the cache's region grid upsampled and blended over it; the true and predicted
class above (green when they agree); the audio's energy per second below. The model is the seed
best on validation. When no map can be drawn (a model without visual attention, a visual cache
without a region grid; a clip dataset: ``avcache.classification.attention``) the folder holds a
README saying why, and the stage still succeeds, so a sweep over models is not broken by it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from avcache import media  # noqa: E402
from avcache.contract import params as P  # noqa: E402
from avcache.contract.cache import CacheError, open_cache, read_provenance  # noqa: E402
from avcache.contract.dataset import SEGMENTS, DatasetError, read_dataset  # noqa: E402
from avcache.contract.io import counted
from avcache.contract.pair import load_pair  # noqa: E402
from avcache.contract.params import AttentionParams  # noqa: E402
from avcache.localization.models import CheckpointError, load_checkpoint  # noqa: E402


class NoMaps(Exception):
    """Attention maps cannot be drawn for this experiment; the message says why."""


def grid_of(visual: Path, dataset) -> tuple[int, int]:
    if not read_provenance(visual).get("decoding", {}).get("spatial_regions", True):
        raise NoMaps(
            f"{visual}'s regions are not places in the frame (its extractor's regions are, e.g., "
            "groups of queries); select a visual cache with a spatial grid"
        )
    with open_cache(visual, dataset) as f:
        shape = f["features"].shape
    if len(shape) != 5 or shape[2] * shape[3] == 1:
        raise NoMaps(
            f"{visual} has no region grid ({'x'.join(map(str, shape[2:]))} per second): attention "
            "over one region is always 1. Select a visual cache with a grid (e.g. efficientnet, "
            "vgg19: 7x7; efficientnet_b7: 19x19)"
        )
    return shape[2], shape[3]


def choose(probs: np.ndarray, labels: np.ndarray, rows: np.ndarray, ids: list[str], p: AttentionParams) -> list[int]:
    """Test rows to draw: given ids, or the most confident all-correct and most confidently wrong videos."""
    if p.ids:
        where = {ids[r]: r for r in rows}
        missing = [v for v in p.ids if v not in where]
        if missing:
            raise P.ParamsError(f"params.yaml: attention.ids: {missing} are not test videos")
        return [where[v] for v in p.ids]
    pred, true = probs.argmax(-1), labels.argmax(-1)
    confidence = probs.max(-1)
    right = (pred == true).all(1)
    correct = sorted(np.flatnonzero(right), key=lambda i: -confidence[i].mean())
    wrong = sorted(np.flatnonzero(~right), key=lambda i: -confidence[i][pred[i] != true[i]].mean())
    picked = {
        "first": list(range(len(rows))),
        "confident_correct": correct,
        "confident_wrong": wrong,
        "both": [x for pair in zip(correct, wrong) for x in pair] + correct[len(wrong) :] + wrong[len(correct) :],
    }
    return [int(rows[i]) for i in picked[p.pick][: p.videos]]


def overlay(img: np.ndarray, alpha: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The attention [R] over a (h, w) grid, upsampled to the image and blended over it. What is
    drawn is the weight above uniform (1/R), scaled by this second's largest excess but never by
    less than 2/R: attention spread over a few regions shows as clearly as a single peak, and
    nearly flat attention stays nearly invisible instead of having its noise stretched."""
    h, w = img.shape[:2]
    excess = alpha.astype(np.float32) - 1 / alpha.size
    excess = (excess / max(float(excess.max()), 2 / alpha.size)).clip(0, 1)
    heat = torch.nn.functional.interpolate(
        torch.from_numpy(excess.reshape(1, 1, *grid)), size=(h, w), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    heat = heat.clip(0, 1)[..., None]
    return (img / 255 * (1 - 0.7 * heat) + 0.7 * heat * plt.get_cmap("inferno")(heat[..., 0])[..., :3]).clip(0, 1)


def draw(
    path: Path,
    frames: np.ndarray,
    alpha: np.ndarray,
    grid: tuple[int, int],
    truth: list[str],
    predicted: list[str],
    energy_db: np.ndarray,
    title: str,
    aspect: float,
) -> None:
    t = len(frames)
    fig = plt.figure(figsize=(1.6 * t * max(aspect, 0.6), 2.9))
    spec = fig.add_gridspec(2, t, height_ratios=[3, 1], hspace=0.35, wspace=0.05)
    for k in range(t):
        ax = fig.add_subplot(spec[0, k])
        ax.imshow(overlay(frames[k], alpha[k], grid), aspect=1 / aspect * frames.shape[2] / frames.shape[1])
        ok = truth[k] == predicted[k]
        ax.set_title(
            f"{k} s\ntrue: {truth[k][:16]}\npred: {predicted[k][:16]}", fontsize=6, color="green" if ok else "red"
        )
        ax.axis("off")
    ax = fig.add_subplot(spec[1, :])
    ax.bar(np.arange(t), energy_db - energy_db.min() + 1, bottom=energy_db.min() - 1, color="grey")
    ax.set_xlim(-0.5, t - 0.5)
    ax.set_xticks(range(t))
    ax.set_ylabel("audio dB", fontsize=7)
    ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=8, y=1.08)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def attention_on_test(ds, audio: Path, visual: Path, models_dir: Path):
    """The best-on-val seed on the test videos: (training.json, that seed's summary, the region
    grid, the cache pair, the test rows, probabilities [n, 10, C], attention [n, 10, regions])."""
    training = json.loads((models_dir / "training.json").read_text())
    best = max(training["seeds"], key=lambda s: s["val_acc"])
    pair = load_pair(ds, audio, visual)
    model, _ = load_checkpoint(models_dir / f"seed{best['seed']}.pt", shapes=pair.shapes, caches=f"{audio} + {visual}")
    if not getattr(model, "use_visual", False):
        raise NoMaps(f"model {training['model']} has no visual attention (no visual branch)")
    grid = grid_of(visual, ds)
    rows = pair.split("test")
    with torch.no_grad():
        probs, alpha = model(
            torch.from_numpy(pair.audio[rows]), torch.from_numpy(pair.visual[rows]), return_attention=True
        )
    return training, best, grid, pair, rows, probs.numpy(), alpha.numpy()


def attention_maps(
    dataset: Path, audio: Path, visual: Path, models_dir: Path, out: Path, p: AttentionParams
) -> list[Path]:
    ds = read_dataset(dataset)
    training, best, grid, pair, rows, probs, alpha = attention_on_test(ds, audio, visual, models_dir)
    chosen = choose(probs, pair.labels[rows], rows, ds.video_ids, p)
    decoding = read_provenance(visual).get("decoding", {})
    size = tuple(decoding.get("input_size", (224, 224)))
    fit = decoding.get("fit", "stretch")
    names = ds.class_names + ["background"]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for row in chosen:
        k = int(np.flatnonzero(rows == row)[0])
        vid = ds.video_ids[row]
        path = media.find_video(ds.videos, vid)
        frames = media.load_frames(path, 1, size, fit=fit)  # one frame at the middle of each second
        aspect = frames.display_size[0] / frames.display_size[1] if fit == "stretch" and frames.display_size[1] else 1
        try:
            sound = media.load_audio(path, 16000).samples.reshape(SEGMENTS, -1)
            energy = 10 * np.log10((sound.astype(np.float64) ** 2).mean(1) + 1e-10)
        except media.MediaError:
            energy = np.zeros(SEGMENTS)
        truth = [names[c] for c in pair.labels[row].argmax(-1)]
        predicted = [names[c] for c in probs[k].argmax(-1)]
        acc = np.mean([a == b for a, b in zip(truth, predicted)])
        title = (
            f"{vid}: {training['model']} (seed {best['seed']}) on {Path(audio).stem} + {Path(visual).stem}, "
            f"{grid[0]}x{grid[1]} regions; {acc:.0%} of seconds right"
        )
        target = out / f"{vid}.png"
        draw(target, frames.images, alpha[k], grid, truth, predicted, energy, title, aspect)
        written.append(target)
    return written


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--audio", type=Path, required=True)
    ap.add_argument("--visual", type=Path, required=True)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for <video id>.png")
    a = ap.parse_args(argv)
    try:
        p = P.from_params(AttentionParams, P.load().get("attention"), "attention")
        written = attention_maps(a.dataset, a.audio, a.visual, a.models, a.out, p)
    except NoMaps as e:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "README.txt").write_text(f"No attention maps: {e}\n")
        print(f"attention: no maps: {e}")
        return
    except (P.ParamsError, media.MediaError, CacheError, DatasetError, CheckpointError) as e:
        raise SystemExit(f"attention: {e}") from None
    print(f"attention: {counted(len(written), 'map')} in {a.out}")


if __name__ == "__main__":
    main()
