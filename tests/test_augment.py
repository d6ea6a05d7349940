"""Spectrogram augmentation on batches: seeded, within bounds, labels kept consistent, off in eval."""

import pytest
import torch

from avcache.classification import augment as A
from avcache.contract.params import ParamsError

B, T, M = 6, 80, 32


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, M, generator=g) * 10 - 40  # dB-like values, far from 0
    y = torch.eye(3)[torch.tensor([0, 0, 1, 1, 2, 2])]
    valid = torch.tensor([80, 50, 20, 80, 7, 64])
    return x, y, valid


def test_same_seed_same_batches_other_seed_other():
    x, y, v = batch()
    opts = A.options(
        {"freq_masks": 2, "freq_width": 8, "time_masks": 2, "time_width": 10, "mixup_alpha": 0.4, "window": 40}
    )
    runs = []
    for seed in (0, 0, 1):
        aug = A.Augment(opts, seed)
        runs.append([aug(x, y, v) for _ in range(3)])
    for (xa, ya, ma), (xb, yb, mb) in zip(runs[0], runs[1]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ma, mb)
    assert not torch.equal(runs[0][0][0], runs[2][0][0])
    assert not torch.equal(runs[0][0][0], runs[0][1][0])  # successive batches draw anew


def test_spec_augment_masks_whole_bands_and_frames_within_bounds():
    x, _, v = batch()
    mask = torch.arange(T)[None, :] < v[:, None]
    gen = torch.Generator().manual_seed(3)
    out = A.spec_augment(x, 1, 8, 0, 0, gen, mask)
    for b in range(B):
        changed = (out[b] != x[b]).all(0)  # a band is masked over every frame
        bands = changed.nonzero().flatten()
        assert len(bands) <= 8 and (len(bands) == 0 or bands.max() - bands.min() + 1 == len(bands))
        fill = (x[b] * mask[b, :, None]).sum() / (mask[b].sum() * M)
        assert torch.allclose(out[b][:, changed], fill.expand(T, len(bands)))
    out = A.spec_augment(x, 0, 0, 3, 10, gen, mask)
    for b in range(B):
        frames = (out[b] != x[b]).all(1).nonzero().flatten()
        assert len(frames) <= 30 and (len(frames) == 0 or frames.max() < v[b])  # never in the padding


def test_mixup_labels_sum_to_one_and_match_the_mix():
    x, y, _ = batch()
    gen = torch.Generator().manual_seed(0)
    xm, ym, _, partner = A.mixup(x, y, 0.4, gen)
    assert torch.allclose(ym.sum(1), torch.ones(B))
    cls = y.argmax(1)
    for b in range(B):
        if cls[b] != cls[partner[b]]:  # the ratio is readable from the labels
            lam = ym[b, cls[b]]
            assert torch.allclose(xm[b], lam * x[b] + (1 - lam) * x[partner[b]], atol=1e-5)
    xb, yb, _, partner = A.mixup(x, y, 1.0, gen, between_class=True)
    assert (y.argmax(1) != y[partner].argmax(1)).all()  # BC: always another class
    assert torch.allclose(yb.sum(1), torch.ones(B)) and ((yb > 0).sum(1) == 2).all()


def test_power_db_mixing_is_the_sum_of_powers():
    a, b = torch.full((1, 2, 2), -20.0), torch.full((1, 2, 2), -20.0)
    out = A._mix(a, b, torch.tensor([0.5]), "power_db")
    assert torch.allclose(out, torch.full_like(a, -20.0))  # equal powers mixed 50/50: the same power
    out = A._mix(torch.zeros(1, 1, 1), torch.full((1, 1, 1), -100.0), torch.tensor([0.5]), "power_db")
    assert torch.allclose(out, 10 * torch.log10(torch.tensor(0.5 + 0.5e-10)))


def test_crop_and_shift_keep_valid_frames_in_the_window():
    x, _, v = batch()
    gen = torch.Generator().manual_seed(1)
    out, inside = A.random_crop_or_shift(x, v, 40, gen)
    assert out.shape == (B, 40, M) and inside.sum(1).tolist() == [40, 40, 20, 40, 7, 40]
    for b in range(B):
        got = out[b][inside[b]]
        start = next(s for s in range(T - len(got) + 1) if torch.equal(x[b, s : s + len(got)], got))
        assert start + len(got) <= v[b]  # a run of the clip's own valid frames
        low = x[b, : v[b]].min()
        assert (out[b][~inside[b]] == low).all()


def test_eval_is_the_identity_and_options_are_checked():
    x, y, v = batch()
    aug = A.Augment(A.options({"freq_masks": 2, "freq_width": 8, "mixup_alpha": 1.0, "window": 30}), 0).eval()
    xe, ye, me = aug(x, y, v)
    assert xe is x and ye is y and me.sum(1).tolist() == v.tolist()
    assert aug.train()(x, y, v)[0].shape == (B, 30, M)
    with pytest.raises(ParamsError, match=r"models\.cnn\.augment: unknown key\(s\) \['freq_mask'\]"):
        A.options({"freq_mask": 2}, "models.cnn.augment")
    with pytest.raises(ParamsError, match="between_class needs mixing on"):
        A.options({"between_class": True})
    with pytest.raises(ParamsError, match=r"time_width must be >= 0"):
        A.options({"time_width": -1})
