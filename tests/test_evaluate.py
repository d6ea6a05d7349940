import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from avcache.localization.evaluate import mean_std, per_class, segment_metrics


def _from_confusion(conf):
    """Labels and one-hot predictions [N, 1, C] realising a given confusion matrix."""
    c = len(conf)
    pairs = [(a, p) for a in range(c) for p in range(c) for _ in range(conf[a][p])]
    y = np.eye(c)[[a for a, _ in pairs]][:, None]
    probs = np.full((len(pairs), 1, c), 0.1 / (c - 1))
    probs[np.arange(len(pairs)), 0, [p for _, p in pairs]] = 0.9
    return probs, y


def test_metrics_on_a_known_confusion():
    conf = [[5, 1, 0], [2, 3, 1], [0, 0, 4]]  # rows: actual, cols: predicted
    probs, y = _from_confusion(conf)
    m = segment_metrics(probs, y)
    assert m["acc"] == 12 / 16
    # by hand: precision 5/7, 3/4, 4/5; recall 5/6, 3/6, 4/4
    f1 = [2 * p * r / (p + r) for p, r in ((5 / 7, 5 / 6), (3 / 4, 3 / 6), (4 / 5, 1.0))]
    assert np.isclose(m["macro_f1"], np.mean(f1))
    assert np.isclose(m["weighted_f1"], np.average(f1, weights=[6, 6, 4]))
    yt, pt = y[:, 0].argmax(-1), probs[:, 0].argmax(-1)
    assert np.isclose(m["macro_f1"], f1_score(yt, pt, average="macro"))
    assert np.isclose(m["auc_macro_ovr"], roc_auc_score(y[:, 0], probs[:, 0], average="macro"))
    table = per_class(probs, y, ["a", "b", "bg"])
    assert np.isclose(table["b"]["precision"], 3 / 4) and table["bg"]["support"] == 4


def test_auc_skips_classes_absent_from_the_split():
    probs, y = _from_confusion([[3, 1, 0], [1, 3, 0], [0, 0, 0]])
    assert np.isfinite(segment_metrics(probs, y)["auc_macro_ovr"])


def test_mean_std_over_seeds():
    out = mean_std([{"acc": 0.7}, {"acc": 0.8}, {"acc": 0.9}])
    assert out == {"acc": 0.8, "acc_std": 0.1}


def test_auc_is_none_where_undefined_and_left_out_of_the_mean():
    """A validation fold whose segments are all one class (tiny clip folds) has no AUC; the
    mean over folds uses the folds where it is defined."""
    from avcache.localization.evaluate import mean_std

    y = np.zeros((3, 1, 4))
    y[:, 0, 2] = 1
    one_class = segment_metrics(np.full((3, 1, 4), 0.25), y)
    assert one_class["auc_macro_ovr"] is None and one_class["acc"] in (0.0, 1.0)
    m = mean_std([one_class, {**one_class, "auc_macro_ovr": 0.8}, {**one_class, "auc_macro_ovr": 0.6}])
    assert m["auc_macro_ovr"] == 0.7 and m["auc_macro_ovr_std"] == round(np.std([0.8, 0.6], ddof=1), 4)
