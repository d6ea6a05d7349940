import pytest
import torch

from train.models import MODELS, build

# att_Net / TBMRF_Net with audio 128, 49 regions of 512, 29 classes (hidden 128, attention 512)
ATTENTION = {
    "affine_audio.weight": (512, 128), "affine_audio.bias": (512,),
    "affine_video.weight": (512, 512), "affine_video.bias": (512,),
    "affine_v.weight": (49, 512), "affine_g.weight": (49, 512), "affine_h.weight": (1, 49),
}
LSTMS = {f"lstm_{m}.{k}{s}": shape for m, d in (("audio", 128), ("video", 512))
         for s in ("", "_reverse")
         for k, shape in (("weight_ih_l0", (512, d)), ("weight_hh_l0", (512, 128)),
                          ("bias_ih_l0", (512,)), ("bias_hh_l0", (512,)))}
REFERENCE = {
    "av_att": {**ATTENTION, **LSTMS, "L1.weight": (64, 512), "L1.bias": (64,),
               "L2.weight": (29, 64), "L2.bias": (29,)},
    "dmrn": {**ATTENTION, **LSTMS, **{f"U_{m}.{i}.{k}": s for m in "va" for i in (0, 2)
                                      for k, s in (("weight", (256, 256)), ("bias", (256,)))},
             "L2.weight": (29, 256), "L2.bias": (29,)},
}


@pytest.mark.parametrize("name", ["av_att", "dmrn"])
def test_reference_shapes_give_reference_parameters(name):
    model = build(name, 128, 512, 49, 29)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == REFERENCE[name]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("regions", [4, 1])
def test_forward_backward_small_shapes(name, regions):
    torch.manual_seed(0)
    model = build(name, 6, 5, regions, 4, hidden_dim=8, hidden_size=12)
    a, v = torch.randn(3, 10, 6), torch.randn(3, 10, regions, 5)
    out = model(a, v)
    assert out.shape == (3, 10, 4) and torch.allclose(out.sum(-1), torch.ones(3, 10))
    loss = torch.nn.MultiLabelSoftMarginLoss()(out, torch.eye(4)[torch.randint(0, 4, (3, 10))])
    loss.backward()
    for k, p in model.named_parameters():
        if k.startswith("affine_") and regions == 1:
            continue  # softmax over a single region is 1: the attention branch has no gradient
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, k


def test_variants_use_what_they_say():
    keys = lambda n: set(build(n, 6, 5, 4, 3, hidden_dim=8, hidden_size=12).state_dict())
    assert any(k.startswith("gru_audio") for k in keys("av_att_gru"))
    assert not any(k.startswith("lstm") for k in keys("dmrn_gru"))
    assert not any("video" in k or "affine" in k for k in keys("audio_only"))
    assert not any("audio" in k or "affine_g" in k for k in keys("visual_only"))


def test_attention_follows_the_spec_by_hand():
    """alpha = softmax_r(w_h . tanh(W_v relu(A_v V_r) + (W_g relu(A_a a))_r)), attended = sum_r alpha_r V_r."""
    torch.manual_seed(1)
    m = build("av_att", 3, 4, 5, 2, hidden_dim=2, hidden_size=6)
    a, v = torch.randn(1, 10, 3), torch.randn(1, 10, 5, 4)
    attended, alpha = m.attend(a, v)
    relu = torch.relu
    for t in (0, 7):
        g = m.affine_g(relu(m.affine_audio(a[0, t])))  # [R]
        z = torch.stack([
            sum(m.affine_h.weight[0, j] * torch.tanh(m.affine_v(relu(m.affine_video(v[0, t, r])))[j] + g[r])
                for j in range(5)) for r in range(5)])
        w = torch.softmax(z, 0)
        assert torch.allclose(alpha[0, t], w, atol=1e-6)
        assert torch.allclose(attended[0, t], (w[:, None] * v[0, t]).sum(0), atol=1e-6)


def test_dmrn_residuals_are_crossed():
    torch.manual_seed(2)
    m = build("dmrn", 3, 4, 5, 2, hidden_dim=2, hidden_size=6)
    a, v = torch.randn(2, 10, 3), torch.randn(2, 10, 5, 4)
    ah, vh, _ = m.encode(a, v)
    merged = 0.5 * (m.U_v(vh) + m.U_a(ah))
    new_video, new_audio = torch.tanh(ah + merged), torch.tanh(vh + merged)
    expect = torch.softmax(m.L2(0.5 * (new_video + new_audio)), -1)
    assert torch.allclose(m(a, v), expect, atol=1e-6)
