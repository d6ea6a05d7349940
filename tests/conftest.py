from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
AVE = SHARED / "data" / "ave"
CLIPS = SHARED / "data" / "clips"
DOG = CLIPS / "llp_BjCEufrlXm4_speech_dog_10s.mp4"
BENTO = CLIPS / "openl3_bento_1s.mp4"


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A 12-video demo dataset (3 classes), generated once per test session."""
    from extract import demo
    root = tmp_path_factory.mktemp("demo")
    clips = demo.generate(root, videos=12, classes=3, seed=3, progress=False)
    return root, clips
