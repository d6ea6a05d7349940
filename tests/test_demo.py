import numpy as np
import pytest

from avcache import media
from avcache.datasets import demo
from avcache.datasets.ave import load_ave


def test_demo_is_valid_ave_with_intended_labels(tiny_demo):
    root, clips = tiny_demo
    ds = load_ave(root)
    assert ds.video_ids == [c.video_id for c in clips]
    assert ds.class_names == [demo.CLASSES[k][0] for k in range(3)]
    assert sorted(ds.split.tolist()).count(0) > 0 and (ds.split >= 0).all()
    for c, lab in zip(clips, ds.labels):
        event = (c.visual == c.cls) & (c.audio == c.cls)
        # an event exactly where the class is both seen and heard, background elsewhere
        assert np.array_equal(lab.argmax(-1), np.where(event, c.cls, 3))
        assert event.sum() == c.end - c.start


def test_demo_has_single_modality_distractors():
    rng = np.random.default_rng(0)
    clips = [demo.plan_clip(rng, f"v{k}", k % 6, 6, 0.6) for k in range(300)]
    vis_only = sum(((c.visual >= 0) & (c.audio < 0)).sum() for c in clips)
    aud_only = sum(((c.audio >= 0) & (c.visual < 0)).sum() for c in clips)
    both_other = sum(
        ((c.visual >= 0) & (c.visual == c.audio) & ((np.arange(10) < c.start) | (np.arange(10) >= c.end))).sum()
        for c in clips
    )
    assert vis_only > 100 and aud_only > 100 and both_other == 0


def test_demo_decodes_back_to_what_was_drawn_and_played(tiny_demo):
    root, clips = tiny_demo
    for c in clips[:4]:
        path = root / "AVE" / f"{c.video_id}.mp4"
        a = media.load_audio(path, 16000)
        assert abs(a.source_seconds - 10) < 0.1 and a.samples.shape == (160000,)
        rms = np.sqrt((a.samples.reshape(10, -1) ** 2).mean(1))
        heard = c.audio >= 0
        assert rms[heard].min() > 3 * rms[~heard].max() if (~heard).any() else True
        f = media.load_frames(path, 2, (160, 120))
        assert f.images.shape == (20, 120, 160, 3) and f.held == 0
        for k, t in enumerate(f.times):
            colour = np.array(demo.CLASSES[max(c.visual[int(t)], 0)][2])
            share = (np.abs(f.images[k].astype(int) - colour).sum(-1) < 60).mean()
            if c.visual[int(t)] >= 0:
                assert share > 0.05, (c.video_id, t)
            else:
                assert share < 0.01, (c.video_id, t)


def test_demo_generation_is_byte_reproducible(tmp_path):
    a = demo.generate(tmp_path / "a", videos=2, classes=2, seed=5, progress=False)
    b = demo.generate(tmp_path / "b", videos=2, classes=2, seed=5, progress=False)
    assert [c.video_id for c in a] == [c.video_id for c in b]
    for name in ["Annotations.txt", "trainSet.txt", "AVE/demo00000.mp4", "AVE/demo00001.mp4"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(
    "stage, params, message",
    [
        ("demo", "demo: {videos: 4, clases: 3}", r"demo: params.yaml: demo: unknown key\(s\) \['clases'\]"),
        ("demo", "demo: {videos: four}", r"demo: params.yaml: demo.videos must be int, got 'four'"),
        ("demo", "demo: {out: d, videos: 4}", r"demo: params.yaml: demo: unknown key\(s\) \['out'\]"),  # data/demo
        ("demo", "demo: {split: [0.5, 0.6, 0.1]}", r"demo: demo.split must be three non-negative"),
        ("dataset", "dataset: {root: d}", r"dataset: params.yaml: dataset: missing key\(s\) \['videos'\]"),
        (
            "dataset",
            "dataset: {root: nowhere, videos: v}",
            r"dataset: nowhere/Annotations.txt: annotation file not found",
        ),
    ],
)
def test_bad_demo_and_dataset_params_name_the_key(tmp_path, monkeypatch, stage, params, message):
    import re

    from avcache.datasets import stage as dataset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(params + "\n")
    with pytest.raises(SystemExit) as e:
        demo.main([]) if stage == "demo" else dataset.main(["--out", "features/dataset.h5"])
    assert re.match(message, str(e.value)), str(e.value)


def test_shape_track_is_where_the_shape_is_drawn(tiny_demo):
    """The attention-map check relies on knowing the shape's position in every frame."""
    root, clips = tiny_demo
    clip = next(c for c in clips if (c.visual >= 0).sum() >= 3)
    frames = media.load_frames(root / "AVE" / f"{clip.video_id}.mp4", 2, (160, 120))
    centres, r = demo.shape_track(clip, 160, 120, frames.times)
    hits = []
    for img, t, (x, y) in zip(frames.images, frames.times, centres):
        c = clip.visual[int(t)]
        if c >= 0 and demo.CLASSES[c][1] in ("disc", "square", "diamond", "cross"):  # filled at the centre
            hits.append(np.abs(img[int(y), int(x)].astype(int) - demo.CLASSES[c][2]).max() < 40)
    assert hits and all(hits) and 20 < r < 40
