"""The training benchmark's own logic (bench/train_speed.py): its data and its patience arithmetic."""

import sys

import pytest
import torch
from helpers import AUDIO, DATASET, REPO, SMALL, VISUAL, make_project

sys.path.insert(0, str(REPO / "bench"))
import train_speed as B  # noqa: E402


def test_synthetic_data_has_ave_shapes_and_needs_both_modalities():
    d = B.make_data(40, 10, 10, seed=1)
    assert d.audio.shape == (60, 10, 128) and d.visual.shape == (60, 10, 49, 512) and d.labels.shape == (60, 10, 29)
    assert torch.equal(d.labels.sum(-1), torch.ones(60, 10)) and (d.visual >= 0).all()
    assert [len(d.split(s)) for s in ("train", "val", "test")] == [40, 10, 10]
    background = d.labels[..., -1].mean().item()
    assert 0.1 < background < 0.5  # the reference loss collapses onto background above ~60 %
    assert torch.equal(B.make_data(40, 10, 10, seed=1).visual, d.visual)  # deterministic


def test_patience_replay_on_a_hand_made_curve():
    """(selected, stopping epoch): stop once `patience` epochs passed without a strict improvement."""
    val = [0.1, 0.3, 0.3, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert B.T.Patience(None).replay(val) == (4, 7)
    assert B.T.Patience(2).replay(val) == (1, 3)
    assert B.T.Patience(3).replay(val) == (4, 7)
    assert B.T.Patience(1).replay(val) == (1, 2)


@pytest.mark.slow
def test_patience_arithmetic_matches_the_training_rule(tmp_path):
    """(selected, stopping epoch) the benchmark derives from a full run's val curve are those of
    training with that patience (avcache.localization.train), on a curve whose plateau exercises
    both edges of the rule: a tie is not an improvement, and a seed stops once `patience` epochs
    have passed since its best."""
    from avcache.localization import train

    make_project(tmp_path)
    data = train.load_data(tmp_path / DATASET, tmp_path / AUDIO, tmp_path / VISUAL)

    def run(patience, epochs=6):
        """The training summary's (best, stop) epochs, and the val accuracy of every epoch trained."""
        val = []
        _, s = train.train_one(
            "av_att",
            SMALL,
            data,
            train.Recipe(epochs=epochs, batch_size=8, patience=patience),
            0,
            None,
            progress=False,
            on_epoch=lambda epoch, model, row: val.append(row["val/acc"]),
        )
        assert s["stop_epoch"] == len(val) - 1
        return (s["best_epoch"], s["stop_epoch"]), val

    full, val = run(None)
    assert B.T.Patience(None).replay(val) == full == (val.index(max(val)), 5)  # the first best: strictly better
    for patience in (1, 2):
        best, stop = B.T.Patience(patience).replay(val)
        assert stop < 5 and val[best + 1] == val[best], "no tie before the stop: the test would show nothing"
        assert run(patience) == ((best, stop), val[: stop + 1]), patience  # a prefix of the full run


@pytest.mark.slow
@pytest.mark.parametrize("name", ["av_att", "dmrn"])
def test_reference_loop_runs_and_stacked_seeds_get_the_per_seed_gradients(name):
    d = B.make_data(8, 2, 2, seed=2)
    assert len(B.reference_loop(name, d, 1, batch_size=4)) == 1
    out = B.seeds_step(name, d, steps=1, n_seeds=2, batch_size=2)
    assert out["sequential"] > 0 and out["stacked"] > 0 and out["same_gradients"]
