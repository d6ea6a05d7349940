"""AV-att and DMRN (Tian et al., ECCV 2018) and their variants, for any cached feature shape.

Inputs: audio [B, T, Da] and visual [B, T, R, Dv] (R regions; a cache without a spatial grid is
one region). Outputs: per-segment class probabilities [B, T, C] (softmax, as in the reference,
whose loss is applied to these probabilities).

With the reference shapes (Da=128, R=49, Dv=512, C=29) ``av_att`` and ``dmrn`` have exactly the
reference's parameter names and shapes (att_Net / TBMRF_Net), so its checkpoints' state dicts load.

Options come from params.yaml ``models.<name>`` and are checked against the constructor (an unknown
key or a wrong type is an error naming it). A checkpoint holds the model name, its options, the
input shapes and the state dict, so ``load_checkpoint`` rebuilds it with nothing else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from avcache.io import atomic_write
from avcache.params import ParamsError, check_call


class AttentionNet(nn.Module):
    """Audio-guided visual attention followed by one bidirectional RNN per modality.

    ``cell`` is "lstm" (reference) or "gru"; the RNNs are named ``<cell>_audio`` / ``<cell>_video``.
    """

    xavier = ("affine_v", "affine_g", "affine_h", "affine_audio", "affine_video")

    def __init__(self, audio_dim: int, visual_dim: int, regions: int, n_classes: int,
                 hidden_dim: int = 128, hidden_size: int = 512, cell: Literal["lstm", "gru"] = "lstm",
                 use_audio: bool = True, use_visual: bool = True):
        super().__init__()
        self.cell, self.hidden_dim = cell, hidden_dim
        self.use_audio, self.use_visual = use_audio, use_visual
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        if use_audio:
            setattr(self, f"{cell}_audio", rnn(audio_dim, hidden_dim, 1, batch_first=True, bidirectional=True))
        if use_visual:
            setattr(self, f"{cell}_video", rnn(visual_dim, hidden_dim, 1, batch_first=True, bidirectional=True))
            self.affine_video = nn.Linear(visual_dim, hidden_size)
            self.affine_v = nn.Linear(hidden_size, regions, bias=False)
            self.affine_h = nn.Linear(regions, 1, bias=False)
            if use_audio:
                self.affine_audio = nn.Linear(audio_dim, hidden_size)
                self.affine_g = nn.Linear(hidden_size, regions, bias=False)
        self.relu = nn.ReLU()

    def init_weights(self):
        for name in self.xavier:
            if hasattr(self, name):
                nn.init.xavier_uniform_(getattr(self, name).weight)

    def attend(self, audio, video):
        """Attended visual features [B, T, Dv] and the attention map [B, T, R]."""
        v = self.relu(self.affine_video(video))  # [B, T, R, H]
        content = self.affine_v(v)  # [B, T, R, R]
        if self.use_audio:
            g = self.affine_g(self.relu(self.affine_audio(audio)))  # [B, T, R]
            content = content + g.unsqueeze(-1)  # entry k is added to row k (region k), as in the reference
        alpha = F.softmax(self.affine_h(torch.tanh(content)).squeeze(-1), dim=-1)
        return (alpha.unsqueeze(-2) @ video).squeeze(-2), alpha

    def encode(self, audio, video):
        """Bidirectional RNN outputs per modality ([B, T, 2*hidden_dim] or None) and attention."""
        a = v = alpha = None
        if self.use_audio:
            a, _ = getattr(self, f"{self.cell}_audio")(audio)
        if self.use_visual:
            attended, alpha = self.attend(audio, video)
            v, _ = getattr(self, f"{self.cell}_video")(attended)
        return a, v, alpha


class AVAtt(AttentionNet):
    """A+V-att: concat the two BiRNN outputs -> ReLU -> Linear(.,64) -> ReLU -> Linear(64,C) -> softmax.

    With one modality switched off it is the thesis's audio-only / visual-only model.
    """

    xavier = AttentionNet.xavier + ("L1", "L2")

    def __init__(self, audio_dim: int, visual_dim: int, regions: int, n_classes: int,
                 hidden_dim: int = 128, hidden_size: int = 512, cell: Literal["lstm", "gru"] = "lstm",
                 use_audio: bool = True, use_visual: bool = True):
        super().__init__(audio_dim, visual_dim, regions, n_classes, hidden_dim, hidden_size, cell,
                         use_audio, use_visual)
        self.L1 = nn.Linear(hidden_dim * 2 * (use_audio + use_visual), 64)
        self.L2 = nn.Linear(64, n_classes)
        self.init_weights()

    def forward(self, audio, video, return_attention=False):
        a, v, alpha = self.encode(audio, video)
        h = torch.cat([x for x in (a, v) if x is not None], -1)
        out = F.softmax(self.L2(self.relu(self.L1(self.relu(h)))), dim=-1)
        return (out, alpha) if return_attention else out


class DMRN(AttentionNet):
    """Dual multimodal residual network (TBMRF_Net, one block by default).

    The residuals are crossed as in the reference code: the new visual state adds the *audio*
    residual and vice versa. The reference initialises only L2 with Xavier.
    """

    xavier = ("L2",)

    def __init__(self, audio_dim: int, visual_dim: int, regions: int, n_classes: int,
                 hidden_dim: int = 128, hidden_size: int = 512, cell: Literal["lstm", "gru"] = "lstm",
                 blocks: int = 1):
        if blocks < 1:
            raise ParamsError(f"params.yaml: DMRN blocks must be at least 1, got {blocks}")
        super().__init__(audio_dim, visual_dim, regions, n_classes, hidden_dim, hidden_size, cell)
        d = hidden_dim * 2
        self.nb_block = blocks
        self.U_v = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))
        self.U_a = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))
        self.L2 = nn.Linear(d, n_classes)
        self.init_weights()

    def forward(self, audio, video, return_attention=False):
        audio_h, video_h, alpha = self.encode(audio, video)
        for _ in range(self.nb_block):
            merged = 0.5 * (self.U_v(video_h) + self.U_a(audio_h))
            video_h, audio_h = torch.tanh(audio_h + merged), torch.tanh(video_h + merged)
        out = F.softmax(self.L2(0.5 * (video_h + audio_h)), dim=-1)
        return (out, alpha) if return_attention else out


# name -> (class, options fixed by the name); the other constructor options are params
BOTH = {"use_audio": True, "use_visual": True}
MODELS = {
    "av_att": (AVAtt, BOTH),
    "av_att_gru": (AVAtt, {**BOTH, "cell": "gru"}),
    "dmrn": (DMRN, {}),
    "dmrn_gru": (DMRN, {"cell": "gru"}),
    "audio_only": (AVAtt, {"use_audio": True, "use_visual": False}),
    "visual_only": (AVAtt, {"use_audio": False, "use_visual": True}),
}
SHAPES = ("audio_dim", "visual_dim", "regions", "n_classes")


def check_options(name: str, options: dict | None) -> dict:
    """``options`` validated against the model's constructor (params.yaml ``models.<name>``)."""
    if name not in MODELS:
        raise ParamsError(f"params.yaml: unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls, fixed = MODELS[name]
    return check_call(cls, options, f"models.{name}", skip=SHAPES + tuple(fixed))


def build(name: str, audio_dim: int, visual_dim: int, regions: int, n_classes: int, **options) -> nn.Module:
    options = check_options(name, options)
    cls, fixed = MODELS[name]
    return cls(audio_dim=audio_dim, visual_dim=visual_dim, regions=regions, n_classes=n_classes,
               **fixed, **options)


def save_checkpoint(path: Path, model: nn.Module, name: str, options: dict, shapes: dict, **meta) -> None:
    """Everything needed to rebuild the model (name, options, input shapes) plus ``meta``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save({"model": name, "options": options, "shapes": shapes,
                                             "state_dict": model.state_dict(), **meta}, f))


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """(the model in eval mode, the checkpoint's other fields)."""
    ck = torch.load(path, weights_only=False)
    model = build(ck["model"], **ck["shapes"], **ck["options"])
    model.load_state_dict(ck.pop("state_dict"))
    return model.eval(), ck


@torch.no_grad()
def predict(model: nn.Module, audio: torch.Tensor, visual: torch.Tensor, idx: torch.Tensor,
            batch: int = 256) -> torch.Tensor:
    """The model's outputs [len(idx), T, C] for rows ``idx``, in batches."""
    model.eval()
    return torch.cat([model(audio[idx[i:i + batch]], visual[idx[i:i + batch]])
                      for i in range(0, len(idx), batch)])
