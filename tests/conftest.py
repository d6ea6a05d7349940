"""Fixtures shared by the test modules; plain helpers are in helpers.py."""

from avcache.kernels import pin

pin()  # as every stage does, before numpy, torch or TensorFlow load

import pytest  # noqa: E402
from helpers import add_duplicate, encode, make_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A 12-video demo dataset (3 classes), generated once per test session."""
    from avcache.datasets import demo

    root = tmp_path_factory.mktemp("demo")
    clips = demo.generate(root, videos=12, classes=3, seed=3, progress=False)
    return root, clips


@pytest.fixture(scope="session")
def demo_ds(tiny_demo):
    """The tiny demo as a Dataset whose videos are where it was generated."""
    from avcache.datasets.ave import load_ave

    root, _ = tiny_demo
    return load_ave(root, videos=str(root / "AVE"))


@pytest.fixture(scope="session")
def demo20(tmp_path_factory):
    """20 demo videos (14 train): enough training vectors for a PCA to 128 on 10 x d caches."""
    from avcache.datasets import demo
    from avcache.datasets.ave import load_ave

    root = tmp_path_factory.mktemp("demo20")
    demo.generate(root, videos=20, classes=2, seed=4, progress=False)
    return load_ave(root, videos=str(root / "AVE"))


@pytest.fixture(scope="module")
def mixed(tiny_demo, tmp_path_factory):
    """6 good videos, a missing and an empty file, a short clip, and one video listed twice."""
    good_dir, _ = tiny_demo
    root = tmp_path_factory.mktemp("mixed") / "d"
    ds = make_dataset(
        root,
        good_dir,
        {"missing": lambda p: None, "empty": lambda p: p.write_bytes(b""), "short": lambda p: encode(p, seconds=2)},
    )
    return add_duplicate(root, ds.video_ids[2])
