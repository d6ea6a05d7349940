from pathlib import Path

from avcache.kernels import pin

pin()  # as every stage does, before numpy, torch or TensorFlow load

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
AVE = SHARED / "data" / "ave"
CLIPS = SHARED / "data" / "clips"
DOG = CLIPS / "llp_BjCEufrlXm4_speech_dog_10s.mp4"
BENTO = CLIPS / "openl3_bento_1s.mp4"


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


def step_signal(sr: int, change_at: int = 5, seconds: int = 10):
    """Silence, then a loud two-tone signal from second ``change_at`` on."""
    import numpy as np

    t = np.arange(seconds * sr) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 1500 * t)
    return (x * (t >= change_at)).astype(np.float32)


def change_row(rows):
    """Index of the largest jump between consecutive per-second rows."""
    import numpy as np

    flat = rows.reshape(len(rows), -1)
    return int(np.argmax(np.linalg.norm(np.diff(flat, axis=0), axis=1))) + 1


def write_seconds_video(path, colours, fps=25, sr=16000):
    """An MP4 whose frame colour is colours[s] and whose tone is 200 + 100 s Hz during second s."""
    from fractions import Fraction

    import av
    import numpy as np

    seconds = len(colours)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4", rate=fps, options={"qscale": "2"})
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = out.add_stream("aac", rate=sr, layout="mono")
        for k in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(
                np.broadcast_to(np.asarray(colours[k // fps], np.uint8), (48, 64, 3)).copy(), format="rgb24"
            )
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        t = np.arange(seconds * sr) / sr
        x = (0.5 * np.sin(2 * np.pi * (200 + 100 * np.floor(t)) * t)).astype(np.float32)
        for k in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(x[None, k : k + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sr, k, Fraction(1, sr)
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))


def save_tiny_wav2vec2(d):
    """A small random wav2vec 2.0 with base's conv kernels and strides, as a save_pretrained folder."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(
        hidden_size=192,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    Wav2Vec2Model(cfg).save_pretrained(d)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True).save_pretrained(d)
    return str(d)


def save_tiny_maskformer(d):
    """A small random MaskFormer with ADE20k's 150 classes, as a save_pretrained folder."""
    import torch
    from transformers import (
        DetrConfig,
        MaskFormerConfig,
        MaskFormerForInstanceSegmentation,
        MaskFormerImageProcessor,
        SwinConfig,
    )

    torch.manual_seed(0)
    cfg = MaskFormerConfig(
        backbone_config=SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        decoder_config=DetrConfig(
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            num_queries=100,
        ),
        fpn_feature_size=32,
        mask_feature_size=32,
        id2label={i: f"c{i}" for i in range(150)},
    )
    MaskFormerForInstanceSegmentation(cfg).save_pretrained(d)
    MaskFormerImageProcessor().save_pretrained(d)
    return str(d)
