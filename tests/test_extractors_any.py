"""Models of the field's common interfaces as extractors, with no code per model: a HEAR module
(``tests/hear_tiny.py``) and a PyTorch network (``tests/tiny_net.py``) whose weights are saved
here and loaded by the generic extractors, through the real stage and the real cache."""

import numpy as np
import pytest
import torch
from helpers import DOG, change_row, step_signal, write_seconds_video

from avcache.contract.cache import read_features, read_provenance
from avcache.contract.io import sha256_files
from avcache.extraction import extractors
from avcache.extraction import stage as run
from avcache.extraction.extractors import WeightsNotFound
from avcache.extraction.reduce import pool_seconds


@pytest.fixture(scope="module")
def hear_file(tmp_path_factory):
    import hear_tiny

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hear") / "tiny.pt"
    torch.save(hear_tiny.TinyHEAR().state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    import tiny_net

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("net") / "tiny_net.pth"
    torch.save(tiny_net.TinyNet().state_dict(), path)
    return str(path)


def test_hear_timestamps_pool_to_their_seconds(hear_file):
    import hear_tiny

    ex = extractors.create("hear", {"module": "hear_tiny", "model_file": hear_file})
    x = step_signal(16000)
    values, times = ex.embed(x)
    assert values.shape == (40, 6) and np.allclose(times, np.arange(40) * 0.25 + 0.125)
    rows = pool_seconds(values, times)
    emb, ts = hear_tiny.get_timestamp_embeddings(torch.from_numpy(x)[None], ex.model)
    direct = emb[0].detach().numpy()
    for s in (0, 5, 9):  # second s: the mean of the embeddings stamped in [s, s+1) s
        assert np.allclose(rows[s], direct[(ts[0] >= 1000 * s) & (ts[0] < 1000 * (s + 1))].mean(0), atol=1e-6)
    assert change_row(rows) == 5
    assert not np.allclose(rows[0], rows[9])  # the trained projection, not zeros


def test_hear_scene_layer_is_one_embedding_per_second(hear_file):
    import hear_tiny

    ex = extractors.create("hear", {"module": "hear_tiny", "model_file": hear_file, "layer": "scene"})
    x = step_signal(16000)
    values, times = ex.embed(x)
    assert values.shape == (10, 6) and np.allclose(times, np.arange(10) + 0.5)
    seventh = hear_tiny.get_scene_embeddings(torch.from_numpy(x[7 * 16000 : 8 * 16000])[None], ex.model)
    assert np.allclose(values[7], seventh.detach().numpy()[0], atol=1e-6)


def test_hear_module_through_the_stage_and_cache(hear_file, demo_ds, tmp_path):
    options = {"module": "hear_tiny", "model_file": hear_file, "reduction": {"method": "none"}}
    out = run.run("audio", "hear", options, demo_ds, demo_ds.videos, tmp_path / "hear.h5", progress=False)
    feats = read_features(out, demo_ds)
    assert feats.shape == (12, 10, 6) and np.isfinite(feats).all()
    prov = read_provenance(out)
    assert prov["weights"] == hear_file and prov["weights_sha256"] == sha256_files(hear_file)
    assert prov["module"] == "hear_tiny" and prov["module_version"] == "0.0.1"


def test_hear_module_that_loads_its_own_weights_says_so():
    ex = extractors.create("hear", {"module": "hear_tiny", "module_loads_weights": True})
    d = ex.describe()
    assert d["weights"] == "loaded by hear_tiny itself" and d["weights_sha256"] is None
    assert ex.embed(step_signal(16000))[0].shape == (40, 6)


def test_hear_refuses_what_it_cannot_run(hear_file, tmp_path):
    with pytest.raises(WeightsNotFound, match="set extractors.hear.model_file .* random weights"):
        extractors.create("hear", {"module": "hear_tiny"})
    with pytest.raises(WeightsNotFound, match="'no_such_hear_module' does not import"):
        extractors.create("hear", {"module": "no_such_hear_module", "model_file": hear_file})
    with pytest.raises(ValueError, match=r"module 'tiny_net' lacks \['load_model'"):
        extractors.create("hear", {"module": "tiny_net", "model_file": hear_file})
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsNotFound, match=r"hear_tiny.load_model\(.*junk.pt'\) failed \(UnpicklingError"):
        extractors.create("hear", {"module": "hear_tiny", "model_file": str(junk)})
    with pytest.raises(WeightsNotFound, match="model_file .*missing.pt does not exist"):
        extractors.create("hear", {"module": "hear_tiny", "model_file": str(tmp_path / "missing.pt")})
    with pytest.raises(ValueError, match="layer must be one of"):
        extractors.create("hear", {"module": "hear_tiny", "model_file": hear_file, "layer": "frame"})


def tiny_options(net_file, **more):
    return {"factory": "tiny_net:TinyNet", "state_dict": net_file, "input_size": 32, "layer": "features", **more}


def test_torch_module_hooked_layer_equals_a_direct_forward(net_file, tmp_path):
    import tiny_net

    ex = extractors.create("torch_module", tiny_options(net_file, frames_per_second=2))
    video = tmp_path / "step.mp4"
    write_seconds_video(video, [(200, 30, 30)] * 5 + [(30, 30, 200)] * 5)
    frames = ex.decode(video)
    values, times = ex(frames)
    assert values.shape == (20, 8, 8, 16) and np.allclose(times, np.arange(20) / 2 + 0.25)
    net = tiny_net.TinyNet().eval()
    net.load_state_dict(torch.load(net_file, weights_only=True))
    x = torch.from_numpy(frames.images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        direct = net.features(x).permute(0, 2, 3, 1).numpy()
    assert np.allclose(values, direct, atol=1e-5)
    assert change_row(pool_seconds(values, times)) == 5
    output = extractors.create("torch_module", tiny_options(net_file, layer=None))
    assert output.embed(frames.images[:2]).shape == (2, 1, 1, 5)  # the logits, as [n, 1, 1, c]


def test_torch_module_through_the_stage_and_cache(net_file, demo_ds, tmp_path):
    options = tiny_options(net_file, frames_per_second=1, reduction={"method": "none"})
    out = run.run("visual", "torch_module", options, demo_ds, demo_ds.videos, tmp_path / "net.h5", progress=False)
    assert read_features(out, demo_ds).shape == (12, 10, 8, 8, 16)
    prov = read_provenance(out)
    assert prov["weights_sha256"] == sha256_files(net_file) and prov["factory"] == "tiny_net:TinyNet"
    assert prov["layer"] == "features"


def test_torch_module_interpolation_reaches_the_decoder(net_file):
    video = DOG  # real pictures: flat colours look the same under any interpolation
    pix = {
        i: extractors.create("torch_module", tiny_options(net_file, interpolation=i, frames_per_second=1)).decode(video)
        for i in ("BILINEAR", "POINT")
    }
    lite0 = extractors.create("efficientnet", {"frames_per_second": 1, "input_size": 32}).decode(video)
    assert np.array_equal(pix["BILINEAR"].images, lite0.images)  # PyAV's default, as every other extractor
    assert not np.array_equal(pix["BILINEAR"].images, pix["POINT"].images)


def test_torch_module_refuses_random_or_unreadable_weights(net_file, tmp_path):
    import tiny_net

    with pytest.raises(WeightsNotFound, match="state_dict to the weights file; .* random weights"):
        extractors.create("torch_module", tiny_options(None))
    pickled = tmp_path / "whole.pt"
    torch.save(tiny_net.TinyNet(), pickled)  # a whole pickled model: weights_only refuses to run its code
    with pytest.raises(WeightsNotFound, match="is not a state dict torch.load.weights_only=True. reads"):
        extractors.create("torch_module", tiny_options(str(pickled)))
    with pytest.raises(WeightsNotFound, match=r"does not load strictly into tiny_net:TinyNet\(\*\*\{'width': 4\}\)"):
        extractors.create("torch_module", tiny_options(net_file, kwargs={"width": 4}))
    with pytest.raises(ValueError, match=r"has no layer 'feature'; e.g. \['features'"):
        extractors.create("torch_module", tiny_options(net_file, layer="feature"))
    with pytest.raises(ValueError, match="unknown key.*'depth'"):
        extractors.create("torch_module", tiny_options(net_file, kwargs={"depth": 2}))
    with pytest.raises(ValueError, match="factory must be 'package.module:callable'"):
        extractors.create("torch_module", tiny_options(net_file, factory="tiny_net.TinyNet"))
    with pytest.raises(ValueError, match="interpolation must be one of"):
        extractors.create("torch_module", tiny_options(net_file, interpolation="cubic"))
