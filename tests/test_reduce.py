import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA

from avcache.extraction.reduce import PCA, ChannelMean, PCAPerVideo, make_reduction, pool_seconds


def _correlated(rng, n, c=24):
    return rng.normal(size=(n, 6)) @ rng.normal(size=(6, c)) + 0.1 * rng.normal(size=(n, c)) + 3


def test_pool_seconds_averages_frames_of_each_second():
    times = np.array([0.1, 0.9, 1.5, 2.0, 2.99, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.999])
    vals = np.arange(len(times), dtype=float)[:, None] * np.ones((1, 3))
    out = pool_seconds(vals, times)
    assert out.shape == (10, 3)
    assert out[:, 0].tolist() == [0.5, 2, 3.5, 5, 6, 7, 8, 9, 10, 11]
    with pytest.raises(ValueError, match=r"no frames in second\(s\) \[1, 2, 3, 4, 5, 6, 7, 8, 9\]"):
        pool_seconds(vals[:1], times[:1] * 0 + 0.5)


def test_channel_mean_groups():
    x = np.arange(2 * 12, dtype=float).reshape(2, 12)
    assert np.allclose(ChannelMean(4)(x), x.reshape(2, 4, 3).mean(-1))
    y = ChannelMean(5)(x)  # 12 channels into 5 groups of 3,3,2,2,2
    assert y.shape == (2, 5) and np.allclose(y[0], [1, 4, 6.5, 8.5, 10.5])
    with pytest.raises(ValueError, match="only 12"):
        ChannelMean(13)(x)


def test_pca_matches_sklearn_and_streams():
    rng = np.random.default_rng(0)
    rows = [_correlated(rng, 10 * 49).reshape(10, 7, 7, 24) for _ in range(8)]  # 8 "videos"
    p = PCA(5)
    p.fit(iter(rows))
    sk = SkPCA(5, svd_solver="full").fit(np.concatenate([r.reshape(-1, 24) for r in rows]))
    signs = np.sign((p.components * sk.components_).sum(1))
    assert np.allclose(p.components, sk.components_ * signs[:, None], atol=1e-6)
    assert np.allclose(p.explained, sk.explained_variance_ratio_, atol=1e-8)
    out = p(rows[0])
    assert out.shape == (10, 7, 7, 5) and out.dtype == np.float32
    assert np.allclose(out.reshape(-1, 5), sk.transform(rows[0].reshape(-1, 24)) * signs, atol=1e-4)
    assert p.n_fit == 8 * 490


def test_pca_fitted_on_given_rows_only():
    """Rows outside the fit set (e.g. test videos) must not move the fit."""
    rng = np.random.default_rng(1)
    train = [_correlated(rng, 10) for _ in range(20)]
    a, b = PCA(3), PCA(3)
    a.fit(train)
    b.fit(train)
    c = PCA(3)
    c.fit(train + [1000 * _correlated(rng, 10)])
    assert np.array_equal(a.components, b.components)  # deterministic, signs included
    assert not np.allclose(a.components, c.components, atol=1e-3)


def test_pca_needs_enough_vectors_and_channels():
    with pytest.raises(ValueError, match="more than 12 vectors"):
        PCA(12).fit([np.ones((10, 24))])
    with pytest.raises(ValueError, match="only 24"):
        PCA(30).fit([np.ones((100, 24))])


def test_pca_per_video_uses_each_videos_own_vectors():
    rng = np.random.default_rng(2)
    video = _correlated(rng, 160).reshape(160, 24)
    out = PCAPerVideo(4)(video)
    sk = SkPCA(4, svd_solver="full").fit_transform(video)
    assert np.allclose(np.abs(out), np.abs(sk), atol=1e-4)
    other = PCAPerVideo(4)(video * 2 + 1)
    assert np.allclose(other, 2 * out, atol=1e-3)  # independent of any other video


def test_make_reduction_validates():
    assert make_reduction(None).method == "none"
    assert make_reduction({"method": "pca", "dim": 8}).dim == 8
    with pytest.raises(ValueError, match="unknown reduction 'svd'"):
        make_reduction({"method": "svd", "dim": 3})
    with pytest.raises(ValueError, match="needs a positive integer 'dim'"):
        make_reduction({"method": "pca"})
    with pytest.raises(ValueError, match=r"unknown reduction option\(s\) \['k'\]"):
        make_reduction({"method": "mean", "dim": 3, "k": 1})
