"""CNNs on spectrograms: torchvision's ResNet layout and sizes, the DCASE 2021 size count, real
training on real ESC-10 log-mels, seeds, head-only transfer, options and the clip protocol."""

import json

import numpy as np
import pytest
import torch
from helpers import SHARED

from avcache.classification import cnns
from avcache.classification.heads import check_options
from avcache.contract import params as P
from avcache.contract.params import ParamsError

ESC10 = SHARED / "data" / "esc10"
FPS, MELS = 40, 40


# --- torchvision's layout, written down from torchvision/models/resnet.py (not from our module) ---


def torchvision_resnet_shapes(depth: int, classes: int = 1000) -> dict[str, tuple]:
    """Every state-dict key of torchvision's ``resnet18`` / ``resnet50`` with its shape:
    conv1/bn1, layer1-4 of BasicBlock [2,2,2,2] or Bottleneck [3,4,6,3] (expansion 4; a
    ``downsample`` Sequential of conv1x1 and BatchNorm2d on the first block of a layer whose
    stride or width changes), fc."""

    def bn(prefix, c):
        return {
            f"{prefix}.weight": (c,),
            f"{prefix}.bias": (c,),
            f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,),
            f"{prefix}.num_batches_tracked": (),
        }

    keys = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    bottleneck = depth == 50
    blocks = (3, 4, 6, 3) if bottleneck else (2, 2, 2, 2)
    expansion = 4 if bottleneck else 1
    inplanes = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            cin = inplanes if b == 0 else planes * expansion
            if bottleneck:
                keys[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
                keys.update(bn(f"{p}.bn1", planes))
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                keys.update(bn(f"{p}.bn2", planes))
                keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                keys.update(bn(f"{p}.bn3", planes * 4))
            else:
                keys[f"{p}.conv1.weight"] = (planes, cin, 3, 3)
                keys.update(bn(f"{p}.bn1", planes))
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                keys.update(bn(f"{p}.bn2", planes))
            if b == 0 and (li > 1 or inplanes != planes * expansion):
                keys[f"{p}.downsample.0.weight"] = (planes * expansion, cin, 1, 1)
                keys.update(bn(f"{p}.downsample.1", planes * expansion))
        inplanes = planes * expansion
    keys["fc.weight"] = (classes, 512 * expansion)
    keys["fc.bias"] = (classes,)
    return keys


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randint(0, 100, (), generator=g) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g)
        for k, s in shapes.items()
    }


@pytest.mark.parametrize("depth, entries, params", [(18, 122, 11_689_512), (50, 320, 25_557_032)])
def test_resnet_loads_a_torchvision_state_dict_strictly_and_has_its_parameter_count(depth, entries, params):
    shapes = torchvision_resnet_shapes(depth)
    assert len(shapes) == entries
    state = random_state(shapes)
    net = cnns.ResNetNet(depth, 1000, in_chans=3)
    net.load_state_dict(state, strict=True)  # names and shapes: torchvision's
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    # torchvision's published num_params (ResNet18_Weights / ResNet50_Weights.IMAGENET1K_V1)
    assert sum(p.numel() for p in net.parameters()) == params


@pytest.mark.parametrize("depth", [18, 50])
def test_an_imagenet_file_loads_into_the_one_channel_model_fc_aside(tmp_path, depth):
    state = random_state(torchvision_resnet_shapes(depth), seed=depth)
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(state, path)
    model = cnns.build_cnn(f"resnet{depth}", {"weights": str(path)})
    net = model.build(MELS, 2)
    own = net.state_dict()
    assert torch.allclose(own["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    assert own["fc.weight"].shape == (2, 512 * (4 if depth == 50 else 1))
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith(("conv1.", "fc.")))


def test_an_incomplete_or_foreign_weights_file_is_one_line_naming_it(tmp_path):
    state = random_state(torchvision_resnet_shapes(18))
    del state["layer3.1.bn2.running_var"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ParamsError, match=r"models\.resnet18\.weights: .*broken\.pth does not load strictly.*layer3"):
        cnns.build_cnn("resnet18", {"weights": str(path)}).build(MELS, 2)
    torch.save(random_state(torchvision_resnet_shapes(50)), path)
    with pytest.raises(ParamsError, match=r"broken\.pth: layer1\.0\.conv1\.weight has shape"):
        cnns.build_cnn("resnet18", {"weights": str(path)}).build(MELS, 2)
    with pytest.raises(ParamsError, match=r"models\.resnet50\.weights: .*nope\.pth does not exist"):
        cnns.build_cnn("resnet50", {"weights": str(tmp_path / "nope.pth")})


def test_mac_counter_counts_conv_and_linear_exactly():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 5, 3)
    )  # conv: 2 x 4 x 5 outputs x 1 x 9; linear: 3 x 40
    assert cnns.count_macs(net, (1, 1, 4, 5)) == 2 * 4 * 5 * 9 + 3 * 40


@pytest.mark.parametrize("classes", [10, 50])
def test_lowcomplexity_is_under_the_dcase_2021_limit(classes):
    net = cnns.LowComplexityNet(classes)
    size = cnns.model_size(net, 40, 50)
    n_floats = sum(t.numel() for t in net.state_dict().values() if t.is_floating_point())
    assert size["dcase2021_nonzero_bytes"] <= n_floats * 4
    assert size["dcase2021_nonzero_bytes"] <= 128_000
    assert size["macs_input"] == [1, 40, 500] and size["macs_per_10s_clip"] > 0


@pytest.mark.parametrize("name", ["cnn", "lowcomplexity", "resnet18", "efficientnet_transfer"])
def test_forward_shapes(name):
    torch.manual_seed(0)
    net = cnns.build_cnn(name, {}).build(MELS, 3).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, MELS, 3 * FPS)).shape == (2, 3)
        assert net(torch.randn(1, 1, MELS, 10 * FPS)).shape == (1, 3)  # any length


# --- real log-mels of real ESC-10 clips -----------------------------------------------------


def esc10_logmels(per_class: int):
    """Log-mels (40 bands, 40 frames/s, 16 kHz, 5 s) of the first ``per_class`` dog barks and rain
    clips of ESC-10, dog and rain alternating: ([2 per_class, 200, 40], one-hot labels)."""
    librosa = pytest.importorskip("librosa")
    xs = []
    for cls in ["001 - Dog bark", "002 - Rain"]:
        for f in sorted((ESC10 / cls).glob("*.ogg"))[:per_class]:
            y, sr = librosa.load(f, sr=16000)
            m = librosa.feature.melspectrogram(y=y[: 5 * sr], sr=sr, n_fft=800, hop_length=sr // FPS, n_mels=MELS)
            db = librosa.power_to_db(m, ref=1.0).T[: 5 * FPS]
            xs.append(np.pad(db, ((0, 5 * FPS - len(db)), (0, 0))))
    order = np.stack([np.arange(per_class), per_class + np.arange(per_class)], 1).ravel()
    return np.stack(xs).astype(np.float32)[order], np.eye(2, dtype=np.uint8)[order // per_class]


@pytest.fixture(scope="module")
def esc10_two_classes():
    """8 dog barks and 8 rain clips, standardised per mel band: ([16, 200, 40], mask, labels)."""
    x, y = esc10_logmels(8)
    x = (x - x.mean((0, 1))) / x.std((0, 1))
    return x, np.ones(x.shape[:2], bool), y


def fit(name, data, seed=0, **options):
    x, mask, y = data
    model = cnns.build_cnn(name, {"batch_size": 8, "window_s": 3.0, **options})
    curve = []
    model.fit(x, mask, y, (x[:0], mask[:0], y[:0]), seed, False, lambda e, v, **m: curve.append((e, v, m)), FPS)
    return model, curve


def test_cnn_learns_dog_bark_from_rain_on_real_log_mels(esc10_two_classes):
    x, mask, y = esc10_two_classes
    model, curve = fit("cnn", esc10_two_classes, max_epochs=8, patience=8, lr=1e-3, hidden=64, channels=16)
    acc = (model.predict(x, mask).argmax(1) == y.argmax(1)).mean()
    assert acc >= 0.9, acc  # chance: 0.5
    assert curve[-1][2]["train_loss"] < curve[0][2]["train_loss"]
    assert model.size["params"] == sum(p.numel() for p in model.net.parameters())


def test_same_seed_same_weights_other_seed_other_weights(esc10_two_classes):
    opts = {"max_epochs": 2, "width": 8}
    a, _ = fit("lowcomplexity", esc10_two_classes, 0, **opts)
    b, _ = fit("lowcomplexity", esc10_two_classes, 0, **opts)
    c, _ = fit("lowcomplexity", esc10_two_classes, 1, **opts)
    sa, sb, sc = (m.net.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("finetune", ["head", pytest.param("whole", marks=pytest.mark.slow)])
def test_efficientnet_head_only_leaves_the_backbone_unchanged(esc10_two_classes, finetune):
    x, mask, y = esc10_two_classes
    data = (x[:4, : 2 * FPS], mask[:4, : 2 * FPS], y[:4])  # 2 dog barks, 2 rain (alternating)
    torch.manual_seed(0)
    before = cnns.build_cnn("efficientnet_transfer", {}).build(MELS, 2).backbone.state_dict()
    model, _ = fit("efficientnet_transfer", data, max_epochs=1, batch_size=2, finetune=finetune, lr=1e-2, window_s=1.0)
    after = model.net.backbone.state_dict()
    same = [torch.equal(before[k], after[k]) for k in before]
    if finetune == "head":
        assert all(same)
        assert model.size["trainable_params"] == 1280 * 2 + 2
    else:
        assert not all(same)
    assert model.size["params"] > 3_000_000  # the whole Lite0 backbone is there either way


# --- options and the protocol ---------------------------------------------------------------


def test_options_are_checked_naming_the_param(tmp_path):
    assert check_options("resnet18", {"lr": 0.01, "optimizer": "sgd"}) == {"lr": 0.01, "optimizer": "sgd"}
    with pytest.raises(ParamsError, match=r"models\.resnet18: unknown key\(s\) \['widht'\]"):
        check_options("resnet18", {"widht": 3})
    with pytest.raises(ParamsError, match=r"models\.resnet50\.depth is fixed by the model name"):
        check_options("resnet50", {"depth": 18})
    with pytest.raises(
        ParamsError, match=r"models\.efficientnet_transfer\.finetune must be 'whole' \| 'head', got 'backbone'"
    ):
        check_options("efficientnet_transfer", {"finetune": "backbone"})
    with pytest.raises(ParamsError, match=r"models\.cnn\.optimizer must be 'adamw' \| 'sgd'"):
        check_options("cnn", {"optimizer": "adam"})
    with pytest.raises(ParamsError, match=r"models\.lowcomplexity\.width must be"):
        check_options("lowcomplexity", {"width": "wide"})


@pytest.mark.slow
def test_the_clip_protocol_trains_a_cnn_on_a_real_logmel_cache(tmp_path, capsys):
    """Real ESC-10 clips (dog bark, rain; one of each per fold) through the real `logmel`
    extraction stage, then train + evaluate: metrics, confusion, curves and the model size."""
    import shutil

    from avcache.classification.evaluate import evaluate
    from avcache.classification.train import train
    from avcache.contract.dataset import read_dataset, write_dataset
    from avcache.datasets.clips import load_clips
    from avcache.extraction import stage as run

    root = tmp_path / "clips"
    rows = ["path,label,fold,group"]
    for cls, label in (("001 - Dog bark", "dog"), ("002 - Rain", "rain")):
        for fold in (1, 2, 3, 4):
            f = sorted((ESC10 / cls).glob(f"{fold}-*.ogg"))[0]
            (root / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, root / label / f.name)
            rows.append(f"{label}/{f.name},{label},{fold},{f.stem.rsplit('-', 1)[0]}")
    (root / "clips.csv").write_text("\n".join(rows) + "\n")
    write_dataset(load_clips(root, "csv", max_seconds=5), tmp_path / "dataset.h5")
    ds = read_dataset(tmp_path / "dataset.h5")
    options = {**P.section(P.load(), "extractors.logmel"), "n_mels": 40}
    spec = run.run("audio", "logmel", options, ds, ds.videos, tmp_path / "logmel.h5", progress=False, device="cpu")
    options = check_options("lowcomplexity", {"max_epochs": 2, "width": 8, "batch_size": 4})
    train("lowcomplexity", options, [0], ds, spec, spec, tmp_path / "m", tmp_path / "live", False, "cpu")
    out = capsys.readouterr().out
    assert "lowcomplexity: " in out and "KB non-zero (DCASE 2021 1a limit 128 KB: within)" in out
    info = json.loads((tmp_path / "m" / "training.json").read_text())
    assert [r["test_fold"] for r in info["runs"]] == [1, 2, 3, 4]
    assert info["model_size"]["dcase2021_nonzero_bytes"] <= 128_000
    metrics = evaluate(tmp_path / "dataset.h5", tmp_path / "m", tmp_path / "r", tmp_path / "live")
    assert metrics["test_clips"] == 8 and metrics["model_size"] == info["model_size"]
    assert (tmp_path / "r" / "confusion.png").is_file() and (tmp_path / "r" / "curves.png").is_file()
    metrics_dir = tmp_path / "live" / "plots" / "metrics"
    logged = {p.relative_to(metrics_dir).as_posix() for p in metrics_dir.rglob("*.tsv")}
    assert {"fold1/seed0/train/loss.tsv", "fold1/seed0/val/loss.tsv", "fold1/seed0/val/acc.tsv"} <= logged


def test_augmentation_goes_through_the_augmenter_in_training_only(esc10_two_classes, monkeypatch):
    """``models.<name>.augment`` trains through ``avcache.classification.augment.Augment`` (its
    crop to the trainer's window, SpecAugment, mixup), seeded, and never touches prediction."""
    from avcache.classification import augment

    calls = []
    real = augment.Augment.__call__

    def spy(self, x, y, valid):
        calls.append((tuple(x.shape), self.opts.window))
        return real(self, x, y, valid)

    monkeypatch.setattr(augment.Augment, "__call__", spy)
    x, mask, y = esc10_two_classes
    data = (x[:4], mask[:4], y[:4])
    opts = {"freq_masks": 1, "freq_width": 4, "time_masks": 1, "time_width": 10, "mixup_alpha": 0.4}
    a, _ = fit("lowcomplexity", data, max_epochs=1, width=4, batch_size=2, augment=opts)
    assert calls == [((2, 5 * FPS, MELS), 3 * FPS)] * 2  # whole clips in, the trainer's 3-s window
    a.predict(*data[:2])
    assert len(calls) == 2
    b, _ = fit("lowcomplexity", data, max_epochs=1, width=4, batch_size=2, augment=opts)
    plain, _ = fit("lowcomplexity", data, max_epochs=1, width=4, batch_size=2)
    sa, sb, sp = (m.net.state_dict() for m in (a, b, plain))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sp[k]) for k in sa)
    with pytest.raises(ParamsError, match=r"models\.lowcomplexity\.augment: unknown key\(s\) \['freq_maskz'\]"):
        check_options("lowcomplexity", {"augment": {"freq_maskz": 1}})


def test_bf16_training_runs_and_a_missing_gpu_is_one_line(esc10_two_classes):
    x, mask, y = esc10_two_classes
    model = cnns.build_cnn("lowcomplexity", {"width": 4, "max_epochs": 1, "batch_size": 8, "window_s": 1.0})
    curve = []
    model.fit(x, mask, y, (x, mask, y), 0, False, lambda e, v, **m: curve.append(v), FPS, "cpu", "bf16")
    assert np.isfinite(curve[0])
    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match=r"train\.device is 'cuda' but CUDA is not available"):
            model.fit(x, mask, y, (x, mask, y), 0, False, lambda *a, **k: None, FPS, "cuda")


def test_a_cnn_given_both_caches_is_refused_naming_inputs(tmp_path):
    from avcache.classification.train import train

    with pytest.raises(ParamsError, match=r"model cnn trains on the audio spectrogram cache only.*inputs: \[audio\]"):
        train("cnn", {"inputs": "both"}, [0], None, tmp_path / "a.h5", tmp_path / "v.h5", tmp_path / "m")
