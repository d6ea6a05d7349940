"""The training benchmark's own logic (bench/train_speed.py): its data and its patience arithmetic."""

import sys

import pytest
import torch
from conftest import REPO

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


def test_patience_arithmetic_matches_the_training_rule():
    """(selected, stopping epoch): stop once `patience` epochs passed without a strict improvement."""
    val = [0.1, 0.3, 0.3, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert B.T.Patience(None).replay(val) == (4, 7)
    assert B.T.Patience(2).replay(val) == (1, 3)
    assert B.T.Patience(3).replay(val) == (4, 7)
    assert B.T.Patience(1).replay(val) == (1, 2)


@pytest.mark.parametrize("name", ["av_att", "dmrn"])
def test_reference_loop_runs_and_stacked_seeds_get_the_per_seed_gradients(name):
    d = B.make_data(8, 2, 2, seed=2)
    assert len(B.reference_loop(name, d, 1, batch_size=4)) == 1
    out = B.seeds_step(name, d, steps=1, n_seeds=2, batch_size=2)
    assert out["sequential"] > 0 and out["stacked"] > 0 and out["same_gradients"]
