"""Heads on clip caches and the fold protocol: no leakage, fitted per fold, real learning."""

import json

import numpy as np
import pytest
from helpers import clip_project

from avcache.classification import heads
from avcache.classification.evaluate import evaluate
from avcache.classification.train import train


def test_every_clip_is_tested_once_and_no_source_straddles_train_val_test(tmp_path):
    ds = clip_project(tmp_path)
    plans = heads.plan_folds(ds)
    assert [p.test_fold for p in plans] == [1, 2, 3, 4, 5]
    tested = np.concatenate([p.test for p in plans])
    assert sorted(tested.tolist()) == list(range(len(ds.video_ids)))
    groups = np.array(ds.groups)
    for p in plans:
        parts = [set(groups[p.train]), set(groups[p.val]), set(groups[p.test])]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert p.test_fold not in set(ds.folds[p.val]) and len(p.val) and len(p.train)


def test_one_test_fold_carves_validation_from_training_sources(tmp_path):
    ds = clip_project(tmp_path, folds=1)
    ds.folds = np.where(ds.folds == 1, 0, 0)
    ds.folds[:30] = 1  # sources 0..9 are the evaluate set, as in DCASE's fold1
    (p,) = heads.plan_folds(ds)
    assert p.test.tolist() == list(range(30)) and len(p.val) and not set(p.val) & set(p.test)
    assert not set(np.array(ds.groups)[p.val]) & set(np.array(ds.groups)[p.train])


def test_standardisation_and_pca_see_only_the_folds_training_clips(tmp_path):
    ds = clip_project(tmp_path)
    x, mask, _ = heads.load_inputs(ds, [tmp_path / "a.h5"])
    p = heads.plan_folds(ds)[0]
    t = heads.Transform(x[p.train], mask[p.train], pca=3)
    x2 = x.copy()
    x2[p.test] += 100  # whatever the test clips hold, the fitted transform is the same
    t2 = heads.Transform(x2[p.train], mask[p.train], pca=3)
    assert np.array_equal(t.mean, t2.mean) and np.array_equal(t.components, t2.components)
    assert t(x).shape == (len(x), 4, 3)
    assert np.allclose(x[p.train][mask[p.train]].mean(0), t.mean)  # valid seconds only


@pytest.mark.parametrize(
    "head, options",
    [
        ("linear", {}),
        pytest.param("mlp", {"hidden": 32, "max_epochs": 60}, marks=pytest.mark.slow),
        pytest.param("temporal", {"hidden": 16, "max_epochs": 60}, marks=pytest.mark.slow),
    ],
)
def test_heads_learn_and_evaluate_writes_fold_metrics(tmp_path, head, options):
    ds = clip_project(tmp_path)
    info = train(
        head,
        {**heads.check_options(head, options), "inputs": "both"},  # params.yaml inputs: [audio, visual]
        [0, 1],
        ds,
        tmp_path / "a.h5",
        tmp_path / "v.h5",
        tmp_path / "models",
        progress=False,
    )
    assert {r["test_fold"] for r in info["runs"]} == {1, 2, 3, 4, 5} and len(info["runs"]) == 10
    m = evaluate(tmp_path / "dataset.h5", tmp_path / "models", tmp_path / "results")
    assert m["test"]["acc"] > 0.8 and set(m["per_fold"]) == {"1", "2", "3", "4", "5"}  # chance: 1/3
    assert {"acc", "acc_std", "macro_f1", "auc_macro_ovr"} <= set(m["test"])
    again = train(
        head,
        {**heads.check_options(head, options), "inputs": "both"},  # params.yaml inputs: [audio, visual]
        [0, 1],
        ds,
        tmp_path / "a.h5",
        tmp_path / "v.h5",
        tmp_path / "models2",
        progress=False,
    )
    assert again["runs"] == info["runs"]
    a, b = (np.load(tmp_path / d / "clips.npz")["test_probs"] for d in ("models", "models2"))
    assert np.array_equal(a, b)  # deterministic
    rows = (tmp_path / "results/confusion.csv").read_text().splitlines()
    assert len(rows) == 1 + 90 and (tmp_path / "results/confusion.png").is_file()


def test_each_modality_alone_and_both(tmp_path):
    """Classes 0 and 1 are only heard, 2 and 3 only seen: each modality alone tells two classes apart
    and guesses between the other two (3/4 at best); both together tell all four."""
    ds = clip_project(tmp_path, classes=4, heard={0, 1}, seen={2, 3})
    acc = {}
    for inputs in ("audio", "visual", "both"):
        train(
            "linear",
            {"inputs": inputs},
            [0],
            ds,
            tmp_path / "a.h5",
            tmp_path / "v.h5",
            tmp_path / inputs,
            progress=False,
        )
        acc[inputs] = evaluate(tmp_path / "dataset.h5", tmp_path / inputs, tmp_path / f"r{inputs}")["test"]["acc"]
        info = json.loads((tmp_path / inputs / "training.json").read_text())
        assert info["inputs"] == inputs
        assert list(info["caches"]) == {"both": ["audio", "visual"]}.get(inputs, [inputs])
    assert max(acc["audio"], acc["visual"]) < 0.8 < acc["both"], acc  # measured: 0.49, 0.71, 0.88
    assert acc["both"] > max(acc["audio"], acc["visual"]) + 0.1, acc


@pytest.mark.slow
def test_multi_label_reports_map(tmp_path):
    ds = clip_project(tmp_path, multi_label=True)
    train(
        "mlp",
        {"hidden": 32, "max_epochs": 60},
        [0],
        ds,
        tmp_path / "a.h5",
        tmp_path / "v.h5",
        tmp_path / "models",
        progress=False,
    )
    m = evaluate(tmp_path / "dataset.h5", tmp_path / "models", tmp_path / "results")
    assert m["test"]["map"] > 0.7 and "acc" not in m["test"]


def test_head_options_are_checked(tmp_path):
    with pytest.raises(Exception, match=r"models.mlp: unknown key\(s\) \['hiden'\]"):
        heads.check_options("mlp", {"hiden": 3})
    with pytest.raises(Exception, match=r"models.linear.inputs is not an option: the top-level `inputs`"):
        heads.check_options("linear", {"inputs": "audio"})
    with pytest.raises(Exception, match=r"model 'av_att' is not a clip head"):
        heads.check_options("av_att", {})


def test_linear_chooses_c_on_val_by_score_and_refits_on_train_and_val(tmp_path):
    ds = clip_project(tmp_path)
    info = train(
        "linear", {"inputs": "both"}, [0], ds, tmp_path / "a.h5", tmp_path / "v.h5", tmp_path / "m", progress=False
    )
    for r in info["runs"]:
        scores = {float(c): v for c, v in r["val_score_by_c"].items()}
        assert sorted(scores) == [0.01, 0.1, 1.0, 10.0]
        best = max(scores.values())
        assert r["c"] == min(c for c, v in scores.items() if v == best)  # best on val, ties: smaller C
        assert r["refit_on"] == r["train"] + r["val"]
    saved = json.loads((tmp_path / "m/training.json").read_text())
    assert [r["c"] for r in saved["runs"]] == [r["c"] for r in info["runs"]]


def test_linear_refit_learns_a_class_only_the_validation_fold_holds():
    """Class 2 is only in the validation rows: the search fits cannot predict it, the refit can."""
    rng = np.random.default_rng(0)
    cls = np.r_[np.arange(60) % 2, np.full(20, 2)]
    x = rng.normal(0, 1, (80, 2, 4)).astype(np.float32)
    x[np.arange(80), :, cls] += 3
    y = np.eye(3, dtype=np.uint8)[cls]
    mask = np.ones((80, 2), bool)
    train_rows, val_rows = np.arange(50), np.r_[50:60, 60:80]
    head = heads.Linear().fit(
        x[train_rows], mask[train_rows], y[train_rows], (x[val_rows], mask[val_rows], y[val_rows]), 0, False, print
    )
    assert head.n_fit == 80 and head.chosen_c in heads.C_GRID
    test = rng.normal(0, 1, (10, 2, 4)).astype(np.float32)
    test[:, :, 2] += 3
    assert (head.predict(test, np.ones((10, 2), bool)).argmax(1) == 2).mean() > 0.8


def test_linear_c_options_are_checked_and_a_fixed_c_skips_the_search(tmp_path):
    ds = clip_project(tmp_path)
    info = train(
        "linear",
        heads.check_options("linear", {"c": 0.5}),
        [0],
        ds,
        tmp_path / "a.h5",
        tmp_path / "v.h5",
        tmp_path / "m",
        progress=False,
    )
    assert {r["c"] for r in info["runs"]} == {0.5} and all(not r["val_score_by_c"] for r in info["runs"])
    with pytest.raises(Exception, match="C must be > 0"):
        heads.Linear(c_grid=[0.1, 0])


def test_neural_batch_is_capped_for_small_sets_and_patience_counts_epochs():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (240, 2, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.uint8)[np.arange(240) % 2]
    mask = np.ones((240, 2), bool)
    val = (x[:40], mask[:40], y[:40])  # noise: val loss stops improving early
    head = heads.MLP(hidden=8, patience=3, max_epochs=50).fit(x, mask, y, val, 0, False, lambda e, v: None)
    assert head.batch == 30 and head.steps == 8 * head.epochs  # 240 / 8, not one batch of 256
    assert head.epochs == head.best_epoch + 1 + 3  # stopped after 3 epochs without a better val loss
    assert heads.MLP(batch_size=1000).fit(x, mask, y, val, 0, False, lambda e, v: None).batch == 240


def test_neural_heads_refit_on_training_and_validation_for_the_best_epoch_count():
    """The validation fold trains too, once it has chosen the epoch count (as linear's refit)."""
    rng = np.random.default_rng(0)
    y = np.eye(2, dtype=np.uint8)[np.arange(120) % 2]
    x = (rng.normal(0, 1, (120, 2, 4)) + 0.8 * y.argmax(1)[:, None, None]).astype(np.float32)
    mask = np.ones((120, 2), bool)
    val = (x[:40], mask[:40], y[:40])
    refit = heads.MLP(hidden=8, patience=3, max_epochs=30).fit(x[40:], mask[40:], y[40:], val, 0, False, print)
    assert refit.n_fit == 120 and refit.refit_epochs == refit.best_epoch + 1
    kept = heads.MLP(hidden=8, patience=3, max_epochs=30, refit=False).fit(
        x[40:], mask[40:], y[40:], val, 0, False, lambda e, v: None
    )
    assert kept.n_fit == 80 and kept.refit_epochs == 0 and kept.best_epoch == refit.best_epoch
    assert not np.allclose(refit.predict(x, mask), kept.predict(x, mask))
    heads.check_options("mlp", {"batch_size": 32, "patience": 5})
    with pytest.raises(Exception, match="batch_size"):
        heads.check_options("mlp", {"batch_size": "big"})


def test_fold_zero_and_missing_groups_are_warned(tmp_path, caplog):
    ds = clip_project(tmp_path)
    ds.folds = ds.folds - 1  # numbered 0-4
    with caplog.at_level("WARNING"):
        plans = heads.plan_folds(ds)
    assert [p.test_fold for p in plans] == [1, 2, 3, 4]
    n0 = int((ds.folds == 0).sum())
    assert n0 > 1 and [r.message for r in caplog.records if "fold 0" in r.message] == [
        f"{n0} clips are in fold 0, which is train-only: they are never tested "
        "(folds are numbered from 1; a 0-based numbering loses its first fold)"
    ]
    assert not [r for r in caplog.records if "group" in r.message]
    caplog.clear()
    ds.folds = ds.folds + 1
    ds.groups = list(ds.paths)  # a CSV without a group column
    with caplog.at_level("WARNING"):
        heads.plan_folds(ds)
    assert len([r for r in caplog.records if "cannot be checked" in r.message]) == 1
    assert not [r for r in caplog.records if "fold 0" in r.message]
    caplog.clear()
    ds.folds = (ds.folds == 1).astype(ds.folds.dtype)  # DCASE 2021: fold 0 trains, fold 1 is evaluated
    with caplog.at_level("WARNING"):
        assert [p.test_fold for p in heads.plan_folds(ds)] == [1]
    assert not [r for r in caplog.records if "fold 0" in r.message]


@pytest.mark.slow
def test_linear_curves_png_shows_the_c_search(tmp_path):
    ds = clip_project(tmp_path)
    train("linear", {"inputs": "both"}, [0], ds, tmp_path / "a.h5", tmp_path / "v.h5", tmp_path / "m", progress=False)
    evaluate(tmp_path / "dataset.h5", tmp_path / "m", tmp_path / "r")
    from matplotlib.image import imread

    from avcache.plots import c_curves_png

    img = imread(tmp_path / "r/curves.png")
    assert img.shape[0] > 100 and img[..., :3].std() > 0.05  # drawn, not blank
    runs = json.loads((tmp_path / "m/training.json").read_text())["runs"]
    assert c_curves_png(runs, tmp_path / "c.png", "t", "acc") == 5  # a curve per fold
