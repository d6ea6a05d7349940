import json

import numpy as np
import pytest
import torch

from avcache.cache import CacheWriter
from avcache.dataset import Dataset, write_dataset
from evaluate import evaluate
from train import train
from train.models import load_checkpoint, predict

DATASET, AUDIO, VISUAL = "features/dataset.h5", "features/audio/fa.h5", "features/visual/fv.h5"
SMALL = {"hidden_dim": 16, "hidden_size": 32}


P_CUE = 0.8  # 38% background: at 62% the reference loss collapses onto "all background"


def make_project(root, n=60, seed=0):
    """A small dataset + caches whose labels need both modalities (event = audio cue AND visual cue)."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 2, n)
    heard = rng.random((n, 10)) < P_CUE
    seen = rng.random((n, 10)) < P_CUE
    audio = rng.normal(0, 0.3, (n, 10, 8)).astype(np.float32)
    visual = rng.normal(0, 0.3, (n, 10, 2, 2, 6)).astype(np.float32)
    for i in range(n):
        audio[i, heard[i], cls[i]] += 2
        visual[i, seen[i], rng.integers(0, 2), rng.integers(0, 2), cls[i]] += 3
    event = heard & seen
    labels = np.zeros((n, 10, 3), np.uint8)
    labels[..., 2] = ~event
    labels[np.arange(n)[:, None], np.arange(10), np.where(event, cls[:, None], 2)] = 1
    split = np.array([0] * (n - 20) + [1] * 10 + [2] * 10, np.int8)
    ds = Dataset([f"v{i}" for i in range(n)], ["a", "b"], labels, split, source="synthetic")
    write_dataset(ds, root / DATASET)
    for path, name, x in ((AUDIO, "fa", audio), (VISUAL, "fv", visual)):
        with CacheWriter(root / path, ds.video_ids, x.shape[1:],
                         {"extractor": name, "name": name, "code_sha256": "x"}) as w:
            for i, row in enumerate(x):
                w.write(i, row)
    return ds


@pytest.fixture
def project(tmp_path, monkeypatch):
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


class Log:
    def __init__(self):
        self.step, self.rows = 0, []

    def log_metric(self, name, value):
        self.rows.append((self.step, name, value))


def test_training_reduces_loss_is_deterministic_and_selects_on_val(project):
    data = train.load_data(DATASET, AUDIO, VISUAL)
    recipe = train.Recipe(epochs=15, batch_size=8, seeds=[0])
    log = Log()
    model, summary = train.train_one("av_att", {}, data, recipe, 0, log, progress=False)
    loss = [v for _, k, v in log.rows if k == "seed0/train/loss"]
    val = [v for _, k, v in log.rows if k == "seed0/val/acc"]
    # the reference's loss acts on softmax probabilities, so even a perfect model sits at a floor
    floor = torch.nn.MultiLabelSoftMarginLoss()(torch.eye(3)[None], torch.eye(3)[None]).item()
    assert loss[-1] - floor < 0.5 * (loss[0] - floor)
    acc = [v for _, k, v in log.rows if k == "seed0/train/acc"]
    assert acc[-1] > acc[0] + 0.2
    assert summary["best_epoch"] == int(np.argmax(val)) and summary["val_acc"] == max(val)
    # the returned model holds the best-on-val weights
    val_idx = data.split("val")
    assert train.segment_accuracy(predict(model, data.audio, data.visual, val_idx),
                                  data.labels[val_idx]) == summary["val_acc"]
    model2, summary2 = train.train_one("av_att", {}, data, recipe, 0, None, progress=False)
    assert summary2 == summary
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), model2.state_dict().values()))
    _, other = train.train_one("av_att", {}, data, recipe, 1, None, progress=False)
    assert other["seed"] == 1


def test_grid_less_visual_cache_trains(project):
    data = train.load_data(DATASET, AUDIO, VISUAL)
    data.visual = data.visual.mean(2, keepdim=True)  # [N, 10, 1, C]: a 10 x d visual cache
    model, _ = train.train_one("dmrn_gru", {"blocks": 2}, data, train.Recipe(epochs=2, batch_size=8), 0,
                               None, progress=False)
    assert model.nb_block == 2 and model(data.audio[:2], data.visual[:2]).shape == (2, 10, 3)


PARAMS = ("audio: fa\nvisual: fv\nmodel: av_att\nmodels: {av_att: {hidden_dim: 16, hidden_size: 32}}\n"
          "train: {epochs: 15, batch_size: 8, seeds: [0, 1]}\n")
STAGE_ARGS = ["--dataset", DATASET, "--audio", AUDIO, "--visual", VISUAL, "--models", "models"]


def test_train_and_evaluate_stages(project):
    (project / "params.yaml").write_text(PARAMS)
    train.main(STAGE_ARGS + ["--live", "dvclive"])
    assert sorted(p.name for p in (project / "models").iterdir()) == ["seed0.pt", "seed1.pt", "training.json"]
    assert (project / "dvclive/plots/metrics/seed1/val/acc.tsv").is_file()
    model, meta = load_checkpoint(project / "models/seed0.pt")  # rebuilt from the checkpoint alone
    assert meta["options"] == SMALL and model.lstm_audio.hidden_size == 16
    evaluate.main(STAGE_ARGS + ["--live", "dvclive", "--results", "results"])
    m = json.loads((project / "results/metrics.json").read_text())
    assert (m["model"], m["audio"], m["visual"], m["seeds"]) == ("av_att", "fa", "fv", 2)
    assert set(m["test"]) >= {"acc", "acc_std", "macro_f1", "weighted_f1", "auc_macro_ovr"}
    assert m["test"]["acc"] > 0.6  # well above the all-background rate on this data
    rows = (project / "results/confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 1 + 10 * 10
    per = json.loads((project / "results/per_class.json").read_text())
    assert set(per["per_class_test_mean_over_seeds"]) == {"a", "b", "background"}
    for png in ("confusion.png", "curves.png"):
        assert (project / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("params, message", [
    ("train: {epochs: 3, lr_stepp: 5}", r"train: unknown key\(s\) \['lr_stepp'\]; accepted: .*'lr_step'"),
    ("train: {epochs: three}", r"train.epochs must be int, got 'three'"),
    ("train: {batch_size: 0}", r"train.batch_size must be positive"),
    ("models: {av_att: {hidden: 3}}", r"models.av_att: unknown key\(s\) \['hidden'\]; accepted: "
                                      r"\['cell', 'hidden_dim', 'hidden_size'\]"),
    ("models: {av_att: {cell: rnn}}", r"models.av_att.cell must be 'lstm' \| 'gru', got 'rnn'"),
    ("models: {av_att_gru: {cell: lstm}}\nmodel: av_att_gru", r"models.av_att_gru: unknown key\(s\) \['cell'\]"),
    ("model: transformer", r"unknown model 'transformer'; choose one of av_att, "),
])
def test_bad_params_stop_the_stage_naming_the_key(project, capsys, params, message):
    import re
    import yaml
    cfg = yaml.safe_load(PARAMS)
    for k, v in yaml.safe_load(params).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    (project / "params.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as e:
        train.main(STAGE_ARGS)
    assert re.search(message, str(e.value)), str(e.value)
    assert str(e.value).startswith("train: params.yaml: ") and not (project / "models").exists()
