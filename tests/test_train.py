import json

import numpy as np
import pytest
import torch
from helpers import AUDIO, DATASET, PARAMS, SMALL, STAGE_ARGS, VISUAL, make_project

from avcache.localization import evaluate, train
from avcache.localization.models import load_checkpoint, predict


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


@pytest.mark.slow
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
    assert (
        train.segment_accuracy(predict(model, data.audio, data.visual, val_idx), data.labels[val_idx])
        == summary["val_acc"]
    )
    model2, summary2 = train.train_one("av_att", {}, data, recipe, 0, None, progress=False)
    assert summary2 == summary
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), model2.state_dict().values()))
    _, other = train.train_one("av_att", {}, data, recipe, 1, None, progress=False)
    assert other["seed"] == 1


@pytest.mark.slow
def test_grid_less_visual_cache_trains(project):
    data = train.load_data(DATASET, AUDIO, VISUAL)
    data.visual = data.visual.mean(2, keepdim=True)  # [N, 10, 1, C]: a 10 x d visual cache
    model, _ = train.train_one(
        "dmrn_gru", {"blocks": 2}, data, train.Recipe(epochs=2, batch_size=8), 0, None, progress=False
    )
    assert model.nb_block == 2 and model(data.audio[:2], data.visual[:2]).shape == (2, 10, 3)


@pytest.mark.slow
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
    seeds = json.loads((project / "models/training.json").read_text())["seeds"]
    assert m["train"]["per_seed"] == {str(s["seed"]): {"best_epoch": s["best_epoch"], "stop_epoch": 14} for s in seeds}
    assert m["train"]["stop_epoch"] == 14 and m["train"]["best_epoch"] == np.mean([s["best_epoch"] for s in seeds])
    rows = (project / "results/confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 1 + 10 * 10
    per = json.loads((project / "results/per_class.json").read_text())
    assert set(per["per_class_test_mean_over_seeds"]) == {"a", "b", "background"}
    for png in ("confusion.png", "curves.png"):
        assert (project / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "params, message",
    [
        ("train: {epochs: 3, lr_stepp: 5}", r"train: unknown key\(s\) \['lr_stepp'\]; accepted: .*'lr_step'"),
        ("train: {epochs: three}", r"train.epochs must be int, got 'three'"),
        ("train: {batch_size: 0}", r"train.batch_size must be positive"),
        (
            "models: {av_att: {hidden: 3}}",
            r"models.av_att: unknown key\(s\) \['hidden'\]; accepted: "
            r"\['cell', 'hidden_dim', 'hidden_size'\]",
        ),
        ("models: {av_att: {cell: rnn}}", r"models.av_att.cell must be 'lstm' \| 'gru', got 'rnn'"),
        ("models: {av_att_gru: {cell: lstm}}\nmodel: av_att_gru", r"models.av_att_gru: unknown key\(s\) \['cell'\]"),
        ("model: transformer", r"unknown model 'transformer'; choose one of av_att, "),
        ("train: {patience: 0}", r"train.patience must be positive or null \(off\), got 0"),
        ("train: {patience: 2.5}", r"train.patience must be int \| None, got 2.5"),
        ("train: {loss: ce}", r"train.loss must be 'reference' \| 'cross_entropy', got 'ce'"),
        ("train: {precision: fp16}", r"train.precision must be 'fp32' \| 'bf16', got 'fp16'"),
        ("train: {device: gpu}", r"train.device must be auto \| cpu \| cuda \| cuda:N, got 'gpu'"),
    ],
)
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


def _run(data, recipe, **kw):
    """train_one plus, from its hook, every epoch's weights and val accuracy."""
    states = {}

    def hook(epoch, model, row):
        states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        states[epoch]["val/acc"] = torch.tensor(row["val/acc"])

    model, summary = train.train_one("av_att", SMALL, data, recipe, 0, None, progress=False, on_epoch=hook, **kw)
    return model, summary, states


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a if k != "val/acc")


@pytest.mark.slow
def test_patience_stops_a_prefix_of_the_full_run_and_keeps_its_best(project):
    data = train.load_data(DATASET, AUDIO, VISUAL)
    full, s_full, states = _run(data, train.Recipe(epochs=15, batch_size=8, seeds=[0]))
    hist = [states[e]["val/acc"].item() for e in range(15)]
    # where patience 2 must stop: the first epoch two past the best so far
    best, stop = 0, None
    for e, acc in enumerate(hist):
        best = e if acc > hist[best] else best
        if e - best >= 2:
            stop = e
            break
    assert stop is not None and stop < 14, "patience never triggered: the test would show nothing"
    model, s, seen = _run(data, train.Recipe(epochs=15, batch_size=8, patience=2))
    assert sorted(seen) == list(range(stop + 1))  # trained exactly up to the stopping epoch
    assert s == {"seed": 0, "best_epoch": best, "val_acc": hist[best], "stop_epoch": stop}
    assert all(_same(seen[e], states[e]) for e in seen)  # the same epochs as the full run, bit for bit
    assert _same(model.state_dict(), states[best])  # the checkpoint is the best on val among them
    assert s_full["stop_epoch"] == 14 and s_full["best_epoch"] >= best


@pytest.mark.slow
def test_resume_restores_the_patience_count(project, tmp_path):
    data = train.load_data(DATASET, AUDIO, VISUAL)
    recipe = train.Recipe(epochs=15, batch_size=8, patience=2)
    model, s, _ = _run(data, recipe)
    assert s["stop_epoch"] < 14 and s["stop_epoch"] - s["best_epoch"] == 2
    state = tmp_path / "seed0.state.pt"
    # interrupted one epoch after the best: one epoch of patience already spent
    _run(data, train.Recipe(epochs=s["best_epoch"] + 2, batch_size=8, patience=2), state_path=state)
    again, s2, seen = _run(data, recipe, state_path=state)
    assert s2 == s and sorted(seen) == [s["stop_epoch"]] and _same(again.state_dict(), model.state_dict())
    # a seed that had already stopped trains no further
    third, s3, seen = _run(data, recipe, state_path=state)
    assert s3 == s and not seen and _same(third.state_dict(), model.state_dict())


@pytest.mark.slow
def test_a_seed_stopped_before_it_ever_improved_is_flagged(project, caplog):
    data = train.load_data(DATASET, AUDIO, VISUAL)
    _, s, _ = _run(data, train.Recipe(epochs=15, batch_size=8, lr=1e-12, patience=3))  # too small to move
    assert (s["best_epoch"], s["stop_epoch"]) == (0, 3)
    assert "av_att seed 0 stopped at epoch 3 (patience 3) without ever beating its first epoch" in caplog.text
    caplog.clear()
    _, s, _ = _run(data, train.Recipe(epochs=15, batch_size=8, patience=3, loss="cross_entropy"))
    assert 0 < s["best_epoch"] and s["stop_epoch"] < 14  # improved, then stopped: no warning
    assert "without ever beating" not in caplog.text


@pytest.mark.slow
def test_cross_entropy_loss_learns_from_logits(project):
    logits, labels = torch.randn(2, 10, 3), torch.eye(3)[torch.randint(0, 3, (2, 10))]
    by_hand = -(labels * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(train.cross_entropy(logits, labels), by_hand)
    assert torch.allclose(
        train.reference_loss(logits, labels), torch.nn.MultiLabelSoftMarginLoss()(logits.softmax(-1), labels)
    )
    data = train.load_data(DATASET, AUDIO, VISUAL)
    log = Log()
    _, summary = train.train_one(
        "av_att", {}, data, train.Recipe(epochs=8, batch_size=8, loss="cross_entropy"), 0, log, progress=False
    )
    loss = [v for _, k, v in log.rows if k == "seed0/train/loss"]
    assert loss[-1] < 0.5 * loss[0] and summary["val_acc"] > 0.7


@pytest.mark.slow
def test_bf16_training_keeps_fp32_weights_and_learns(project):
    data = train.load_data(DATASET, AUDIO, VISUAL)
    log = Log()
    model, summary = train.train_one(
        "dmrn",
        SMALL,
        data,
        train.Recipe(epochs=6, batch_size=8, precision="bf16", loss="cross_entropy"),
        0,
        log,
        progress=False,
    )
    assert all(p.dtype == torch.float32 for p in model.parameters())
    loss = [v for _, k, v in log.rows if k == "seed0/train/loss"]
    assert all(np.isfinite(loss)) and loss[-1] < loss[0]
    fp32 = train.train_one(
        "dmrn", SMALL, data, train.Recipe(epochs=6, batch_size=8, loss="cross_entropy"), 0, None, progress=False
    )[0]
    assert not _same(model.state_dict(), fp32.state_dict())  # the steps really ran in bf16


def test_data_moves_once_and_batches_gather_into_reused_buffers(project):
    data = train.load_data(DATASET, AUDIO, VISUAL).to(torch.device("cpu"))
    assert data.device == torch.device("cpu") and set(data.splits) == {"train", "val", "test"}
    batches = train.Batches(data, 4)
    first = batches(torch.tensor([3, 1, 4, 1]))
    pointers = [x.data_ptr() for x in first]
    second = batches(torch.tensor([5, 9, 2, 6]))
    assert [x.data_ptr() for x in second] == pointers  # no allocation per step
    for x, full in zip(second, (data.audio, data.visual, data.labels)):
        assert torch.equal(x, full[torch.tensor([5, 9, 2, 6])])


def test_stage_with_device_cuda_and_no_cuda_stops_clearly(project, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (project / "params.yaml").write_text(PARAMS.replace("seeds: [0, 1]", "seeds: [0, 1], device: cuda"))
    with pytest.raises(SystemExit, match=r"^train: params.yaml: train.device is 'cuda' but CUDA is not available"):
        train.main(STAGE_ARGS)
    assert not (project / "models").exists()
