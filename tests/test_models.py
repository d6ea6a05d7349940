import pytest
import torch
from torch.nn import functional as F

from avcache.contract.params import ParamsError
from avcache.localization.models import MODELS, build, resolve_device, rows

# att_Net / TBMRF_Net with audio 128, 49 regions of 512, 29 classes (hidden 128, attention 512)
ATTENTION = {
    "affine_audio.weight": (512, 128),
    "affine_audio.bias": (512,),
    "affine_video.weight": (512, 512),
    "affine_video.bias": (512,),
    "affine_v.weight": (49, 512),
    "affine_g.weight": (49, 512),
    "affine_h.weight": (1, 49),
}
LSTMS = {
    f"lstm_{m}.{k}{s}": shape
    for m, d in (("audio", 128), ("video", 512))
    for s in ("", "_reverse")
    for k, shape in (
        ("weight_ih_l0", (512, d)),
        ("weight_hh_l0", (512, 128)),
        ("bias_ih_l0", (512,)),
        ("bias_hh_l0", (512,)),
    )
}
REFERENCE = {
    "av_att": {**ATTENTION, **LSTMS, "L1.weight": (64, 512), "L1.bias": (64,), "L2.weight": (29, 64), "L2.bias": (29,)},
    "dmrn": {
        **ATTENTION,
        **LSTMS,
        **{f"U_{m}.{i}.{k}": s for m in "va" for i in (0, 2) for k, s in (("weight", (256, 256)), ("bias", (256,)))},
        "L2.weight": (29, 256),
        "L2.bias": (29,),
    },
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
    def keys(n):
        return set(build(n, 6, 5, 4, 3, hidden_dim=8, hidden_size=12).state_dict())

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
        z = torch.stack(
            [
                sum(
                    m.affine_h.weight[0, j] * torch.tanh(m.affine_v(relu(m.affine_video(v[0, t, r])))[j] + g[r])
                    for j in range(5)
                )
                for r in range(5)
            ]
        )
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


def reference_forward(name, sd, audio, video):
    """Per-segment probabilities and attention of the reference models, written from their description
    (shared/reference/README.md, section 3), not from avcache's code, and computed from the state dict
    alone: per segment as the reference does ([B*T, R, Dv] batches), with torch's own RNNs holding the
    saved weights. The GRU variants swap the cell; audio-only is AV-att without the visual branch,
    visual-only AV-att without the audio branch (so its attention has no audio term)."""
    cell = torch.nn.GRU if name.endswith("_gru") else torch.nn.LSTM
    batch, t = audio.shape[:2]

    def linear(x, key):
        return F.linear(x, sd[f"{key}.weight"], sd.get(f"{key}.bias"))

    def mlp(x, key):
        return linear(torch.tanh(linear(x, f"{key}.0")), f"{key}.2")

    def birnn(key, x):
        w = {k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith(f"{key}.")}
        rnn = cell(x.shape[-1], w["weight_hh_l0"].shape[1], batch_first=True, bidirectional=True)
        rnn.load_state_dict(w)
        return rnn(x)[0]

    rnn = "gru" if name.endswith("_gru") else "lstm"
    heard = seen = alpha = None
    if name != "visual_only":
        heard = birnn(f"{rnn}_audio", audio)
    if name != "audio_only":
        v = video.reshape(batch * t, -1, video.shape[-1])  # [B*T, R, Dv]
        content = linear(torch.relu(linear(v, "affine_video")), "affine_v")  # [B*T, R, R]
        if name != "visual_only":  # audio guidance: entry k of affine_g(a) is added to row k
            a = torch.relu(linear(audio.reshape(batch * t, -1), "affine_audio"))
            content = content + linear(a, "affine_g").unsqueeze(2)
        z = linear(torch.tanh(content), "affine_h").squeeze(2)  # [B*T, R]
        alpha = torch.softmax(z, dim=-1)
        attended = torch.bmm(alpha.unsqueeze(1), v).reshape(batch, t, -1)  # on the raw features
        seen = birnn(f"{rnn}_video", attended)
        alpha = alpha.reshape(batch, t, -1)
    if name.startswith("dmrn"):  # one block; U_v, U_a: Linear-Tanh-Linear; the residuals are crossed
        merged = 0.5 * (mlp(seen, "U_v") + mlp(heard, "U_a"))
        new_video, new_audio = torch.tanh(heard + merged), torch.tanh(seen + merged)
        out = linear(0.5 * (new_video + new_audio), "L2")
    else:
        h = torch.cat([x for x in (heard, seen) if x is not None], -1)
        out = linear(torch.relu(linear(torch.relu(h), "L1")), "L2")
    return torch.softmax(out, dim=-1), alpha


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_are_the_reference_computation_and_the_softmax_of_the_logits(name):
    torch.manual_seed(3)
    m = build(name, 128, 512, 49, 29).eval()  # reference shapes: a reference state dict loads here
    m.load_state_dict({k: torch.randn_like(v) * 0.05 for k, v in m.state_dict().items()})
    a, v = torch.randn(2, 10, 128), torch.rand(2, 10, 49, 512)
    with torch.no_grad():
        probs, alpha = m(a, v, return_attention=True)
        logits, alpha2 = m.logits(a, v)
        expect, expect_alpha = reference_forward(name, m.state_dict(), a, v)
        assert torch.allclose(probs, expect, atol=1e-6, rtol=0)
        assert (alpha is None) == (expect_alpha is None) == (alpha2 is None)
        assert alpha is None or torch.allclose(alpha, expect_alpha, atol=1e-6, rtol=0)
        assert torch.equal(probs, F.softmax(logits, -1))
        assert torch.allclose(probs.sum(-1), torch.ones(2, 10))
        assert not torch.allclose(logits.sum(-1), torch.ones(2, 10))  # logits really are logits


@pytest.mark.parametrize("name", ["av_att", "dmrn_gru"])
def test_bf16_autocast_keeps_the_rnns_in_fp32(name):
    """oneDNN has no bf16 LSTM without AVX512-BF16/AMX: under autocast the RNNs must stay fp32."""
    torch.manual_seed(0)
    m = build(name, 6, 5, 4, 3, hidden_dim=8, hidden_size=12)
    a, v = torch.randn(3, 10, 6), torch.randn(3, 10, 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = m.logits(a, v)
        enc = m.encode(a, v)
    assert logits.dtype == torch.bfloat16 and all(x.dtype == torch.float32 for x in enc[:2])
    assert torch.allclose(logits.float(), m.logits(a, v)[0], atol=0.05)
    logits.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in m.parameters())


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ParamsError, match=r"train.device is 'cuda' but CUDA is not available here .*use cpu or auto"):
        resolve_device("cuda")
    with pytest.raises(ParamsError, match=r"train.device is 'cuda:1' but CUDA is not available"):
        resolve_device("cuda:1")
    for bad in ("gpu", "cuda:x", "CPU", 0):
        with pytest.raises(ParamsError, match=r"train.device must be auto \| cpu \| cuda \| cuda:N, got"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ParamsError, match=r"'cuda:2' but there are only 2 CUDA device"):
        resolve_device("cuda:2")


def test_cuda_without_cuda_is_a_clear_error_on_this_machine():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ParamsError, match="CUDA is not available here"):
        resolve_device("cuda")


def test_rows_gathers_exactly_like_indexing():
    x = torch.randn(7, 3, 2, 4)
    idx = torch.tensor([5, 0, 5, 2])
    assert torch.equal(rows(x, idx), x[idx])
    out = torch.empty(4, 3, 2, 4)
    assert rows(x, idx, out) is out and torch.equal(out, x[idx])
    assert torch.equal(rows(x, idx[:2], out[:2]), x[idx[:2]])
