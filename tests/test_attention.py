"""Attention maps: the shape geometry the demo measurement relies on, and the map's drawing."""

import sys

import numpy as np
import pytest
from helpers import REPO

from avcache import media
from avcache.datasets import demo

sys.path.insert(0, str(REPO / "bench"))
from attention_on_shape import shape_cells  # noqa: E402


def test_shape_cells_cover_the_drawn_shape_and_little_else(tiny_demo):
    """On frames decoded from the demo, every pixel in the shape's colour lies in a cell that
    shape_cells marks, and the marked cells are a small part of the 7x7 grid."""
    root, clips = tiny_demo
    shares = []
    for clip in clips[:4]:
        frames = media.load_frames(root / "AVE" / f"{clip.video_id}.mp4", 2, (160, 120))
        centres, r = demo.shape_track(clip, 160, 120, frames.times)
        cells = shape_cells(centres, r, 160, 120, (7, 7)).reshape(-1, 7, 7)
        for img, t, mask in zip(frames.images, frames.times, cells):
            c = clip.visual[int(t)]
            if c < 0:
                continue
            ys, xs = np.nonzero(np.abs(img.astype(int) - demo.CLASSES[c][2]).max(-1) < 20)
            assert len(ys) > 50
            inside = mask[(ys * 7 // 120).clip(0, 6), (xs * 7 // 160).clip(0, 6)]
            assert inside.mean() > 0.97, clip.video_id
            shares.append(mask.mean())
    assert shares and 0 < np.mean(shares) < 0.35


def test_overlay_shows_attention_above_uniform_only():
    from avcache.localization.attention import overlay

    img = np.full((70, 70, 3), 100, np.uint8)
    alpha = np.zeros(49)
    alpha[24] = 1.0  # the centre cell
    out = overlay(img, alpha, (7, 7))
    assert np.allclose(out[2, 2], 100 / 255, atol=1e-3)
    assert out[35, 35].sum() > out[2, 2].sum() + 0.3
    flat = np.full(49, 1 / 49) + np.random.default_rng(0).normal(0, 0.002, 49)  # noise around uniform
    assert np.abs(overlay(img, flat / flat.sum(), (7, 7)) - 100 / 255).max() < 0.12


@pytest.mark.slow
def test_a_trained_av_att_looks_at_the_shape_on_the_demo(tmp_path):
    """The measurement of bench/attention_on_shape.py on a small demo, end to end: real videos,
    EfficientNet-Lite0 and musicnn caches, AV-att trained and selected on val. On the full demo
    (make repro: 200 videos) 83 % of the attention mass of event seconds fell on the shape's
    cells where uniform attention would put 37 %, 99 % of seconds above uniform. Here (60 videos,
    one seed) it measured 87 % against 30 % (2.9x), 98 % of 60 event seconds above uniform;
    the floor is 1.4x uniform and 80 % of event seconds."""
    from attention_on_shape import measure

    from avcache.contract.dataset import write_dataset
    from avcache.datasets.ave import load_ave
    from avcache.extraction import stage as run
    from avcache.localization.train import Recipe, train

    cfg = dict(videos=60, classes=2, seed=1, distractor_prob=0.6, width=160, height=120)
    demo.generate(tmp_path / "demo", **cfg, fps=4, progress=False)
    ds = load_ave(tmp_path / "demo", videos=str(tmp_path / "demo" / "AVE"))
    write_dataset(ds, tmp_path / "dataset.h5")
    audio = run.run("audio", "musicnn", {}, ds, ds.videos, tmp_path / "a.h5", progress=False)
    visual = run.run(
        "visual",
        "efficientnet",
        {"frames_per_second": 1, "reduction": {"method": "mean", "dim": 128}},
        ds,
        ds.videos,
        tmp_path / "v.h5",
        progress=False,
    )
    recipe = Recipe(epochs=30, batch_size=8, seeds=[0], device="cpu")
    train(
        "av_att",
        {"hidden_dim": 128, "hidden_size": 64},
        recipe,
        tmp_path / "dataset.h5",
        audio,
        visual,
        tmp_path / "models",
        None,
        progress=False,
    )
    m = measure(tmp_path / "dataset.h5", audio, visual, tmp_path / "models", cfg)
    print(m)
    assert m["event"]["seconds"] >= 20
    assert m["event"]["ratio"] >= 1.4 and m["event"]["seconds_above_uniform"] >= 0.8
