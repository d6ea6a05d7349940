"""Visual extractors on models of the real interface (keras.applications built with weights=None
and saved here, a tiny MaskFormer saved with save_pretrained), loaded by the production loaders."""

import numpy as np
import pytest
from helpers import change_row, save_tiny_maskformer, write_seconds_video

from avcache.contract.cache import read_features, read_provenance
from avcache.extraction import extractors
from avcache.extraction import stage as run
from avcache.extraction.extractors import WeightsNotFound
from avcache.extraction.reduce import pool_seconds


@pytest.fixture(scope="module")
def keras_weights(tmp_path_factory):
    """Random-init weights of a keras.applications model, in a file (weights do not depend on size)."""
    import keras

    folder, made = tmp_path_factory.mktemp("keras"), {}

    def get(app):
        if app not in made:
            model = getattr(keras.applications, app)(include_top=False, weights=None, input_shape=(64, 64, 3))
            made[app] = str(folder / f"{app}.weights.h5")
            model.save_weights(made[app])
        return made[app]

    return get


@pytest.mark.slow
def test_vgg19_block5_pool_alignment_and_cache(keras_weights, demo_ds, tmp_path):
    w = keras_weights("VGG19")
    assert extractors.create("vgg19", {"weights": w}).model.output.shape[1:] == (7, 7, 512)  # at 224 px
    ex = extractors.create("vgg19", {"weights": w, "input_size": 64, "frames_per_second": 16})
    video = tmp_path / "step.mp4"
    write_seconds_video(video, [(200, 30, 30)] * 5 + [(30, 30, 200)] * 5)
    frames = ex.decode(video)
    rows = pool_seconds(*ex(frames))
    assert rows.shape == (10, 2, 2, 512)
    assert np.allclose(rows[0], rows[4], rtol=1e-3, atol=1e-3) and change_row(rows) == 5
    out = run.run(
        "visual",
        "vgg19",
        {"weights": w, "input_size": 64, "frames_per_second": 1},
        demo_ds,
        demo_ds.videos,
        tmp_path / "vgg.h5",
        progress=False,
    )
    assert read_features(out, demo_ds).shape == (12, 10, 2, 2, 512)
    prov = read_provenance(out)
    assert prov["layer"].startswith("block5_pool") and len(prov["weights_sha256"]) == 64


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, app, full",
    [("efficientnet_b7", "EfficientNetB7", (19, 19, 2560)), ("efficientnet_v2l", "EfficientNetV2L", (15, 15, 1280))],
)
def test_efficientnet_keras_variants(keras_weights, demo_ds, tmp_path, name, app, full):
    w = keras_weights(app)
    at_thesis_size = extractors.create(name, {"weights": w})
    assert at_thesis_size.keras.output.shape[1:] == full  # 600 px (B7) / 480 px (V2L)
    opts = {"weights": w, "input_size": 64, "frames_per_second": 1, "reduction": {"method": "pca", "dim": 128}}
    out = run.run("visual", name, opts, demo_ds, demo_ds.videos, tmp_path / "e.h5", progress=False)
    feats = read_features(out, demo_ds)
    assert feats.shape == (12, 10, 2, 2, 128) and np.isfinite(feats).all()  # thesis: h x w x 128 by PCA


@pytest.mark.slow
def test_convnext_stage3_and_pca(keras_weights, demo_ds, tmp_path):
    import keras

    from avcache.extraction.extractors.keras_apps import app_name, stage3_layer

    xlarge = getattr(keras.applications, app_name("xlarge"))(include_top=False, weights=None, input_shape=(224, 224, 3))
    assert xlarge.get_layer(stage3_layer("xlarge")).output.shape[1:] == (7, 7, 2048)
    opts = {
        "size": "tiny",
        "weights": keras_weights("ConvNeXtTiny"),
        "input_size": 64,
        "frames_per_second": 1,
        "reduction": {"method": "pca", "dim": 204},
    }
    out = run.run("visual", "convnext", opts, demo_ds, demo_ds.videos, tmp_path / "c.h5", progress=False)
    assert read_features(out, demo_ds).shape == (12, 10, 2, 2, 204)  # thesis: 7x7x204 at 224 px


@pytest.mark.slow
def test_keras_partial_load_is_an_error_not_random_layers(keras_weights, monkeypatch):
    """If Keras ever loads a file only in part (it warns and keeps fresh weights), we stop."""
    import warnings

    import keras

    real = keras.applications.VGG19

    def partly_loading(**kw):
        warnings.warn("Affected layers will retain their freshly-initialized weights.", stacklevel=2)
        return real(**kw)

    monkeypatch.setattr(keras.applications, "VGG19", partly_loading)
    with pytest.raises(WeightsNotFound, match="1 layer groups were not in the file"):
        extractors.create("vgg19", {"weights": keras_weights("VGG19"), "input_size": 64})


@pytest.mark.slow
def test_keras_weights_that_do_not_fit_stop_the_stage(keras_weights, tmp_path):
    with pytest.raises(WeightsNotFound, match="does not exist; set extractors.vgg19.weights"):
        extractors.create("vgg19", {"weights": str(tmp_path / "none.h5")})
    with pytest.raises(WeightsNotFound, match=r"convnext: keras.applications.ConvNeXtTiny could not load"):
        extractors.create("convnext", {"size": "tiny", "weights": keras_weights("VGG19")})


@pytest.fixture(scope="module")
def maskformer_dir(tmp_path_factory):
    return save_tiny_maskformer(tmp_path_factory.mktemp("maskformer"))


@pytest.mark.slow
def test_maskformer_class_and_mask_outputs(maskformer_dir, demo_ds, tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (3, 640, 640, 3), dtype=np.uint8)
    mask = extractors.create("maskformer", {"model": maskformer_dir, "output": "mask"})
    assert mask.embed(images).shape == (3, 16, 1, 160)  # thesis: 16 x 160 per second
    opts = {"model": maskformer_dir, "output": "class", "frames_per_second": 1}
    out = run.run("visual", "maskformer", opts, demo_ds, demo_ds.videos, tmp_path / "m.h5", progress=False)
    assert read_features(out, demo_ds).shape == (12, 10, 10, 1, 151)  # thesis: 10 x 151 per second


def test_maskformer_unknown_model_says_how(tmp_path):
    with pytest.raises(WeightsNotFound, match="set extractors.maskformer.model"):
        extractors.create("maskformer", {"model": str(tmp_path / "none")})
