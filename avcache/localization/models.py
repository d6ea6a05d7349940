"""AV-att and DMRN (Tian et al., ECCV 2018) and their variants, for any cached feature shape.

Inputs: audio [B, T, Da] and visual [B, T, R, Dv] (R regions; a cache without a spatial grid is
one region). ``logits`` gives the per-segment class logits [B, T, C]; calling the model gives their
softmax, the probabilities the reference returned (its loss acted on them; evaluation's AUC reads
them), so a reference state dict gives the reference's outputs.

With the reference shapes (Da=128, R=49, Dv=512, C=29) ``av_att`` and ``dmrn`` have exactly the
reference's parameter names and shapes (att_Net / TBMRF_Net), so its checkpoints' state dicts load.

Options come from params.yaml ``models.<name>`` and are checked against the constructor (an unknown
key or a wrong type is an error naming it). A checkpoint holds the model name, its options, the
input shapes and the state dict, so ``load_checkpoint`` rebuilds it with nothing else.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from avcache import runtime
from avcache.contract.io import atomic_write
from avcache.contract.params import ParamsError, check_call


class AttentionNet(nn.Module):
    """Audio-guided visual attention followed by one bidirectional RNN per modality.

    ``cell`` is "lstm" (reference) or "gru"; the RNNs are named ``<cell>_audio`` / ``<cell>_video``.
    """

    xavier = ("affine_v", "affine_g", "affine_h", "affine_audio", "affine_video")

    def __init__(
        self,
        audio_dim: int,
        visual_dim: int,
        regions: int,
        n_classes: int,
        hidden_dim: int = 128,
        hidden_size: int = 512,
        cell: Literal["lstm", "gru"] = "lstm",
        use_audio: bool = True,
        use_visual: bool = True,
    ):
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

    def rnn(self, modality, x):
        """The modality's BiRNN, always in fp32: under bf16 autocast oneDNN has no LSTM on CPUs
        without AVX512-BF16/AMX (it fails), and the RNNs are a small part of the cost anyway."""
        with torch.autocast(x.device.type, enabled=False):
            return getattr(self, f"{self.cell}_{modality}")(x.float())[0]

    def encode(self, audio, video):
        """Bidirectional RNN outputs per modality ([B, T, 2*hidden_dim] or None) and attention."""
        a = v = alpha = None
        if self.use_audio:
            a = self.rnn("audio", audio)
        if self.use_visual:
            attended, alpha = self.attend(audio, video)
            v = self.rnn("video", attended)
        return a, v, alpha

    def forward(self, audio, video, return_attention=False):
        """Per-segment class probabilities: the softmax of ``logits``, where the reference put it."""
        z, alpha = self.logits(audio, video)
        probs = F.softmax(z, dim=-1)
        return (probs, alpha) if return_attention else probs


class AVAtt(AttentionNet):
    """A+V-att: concat the two BiRNN outputs -> ReLU -> Linear(.,64) -> ReLU -> Linear(64,C) [-> softmax].

    With one modality switched off it is the thesis's audio-only / visual-only model.
    """

    xavier = AttentionNet.xavier + ("L1", "L2")

    def __init__(
        self,
        audio_dim: int,
        visual_dim: int,
        regions: int,
        n_classes: int,
        hidden_dim: int = 128,
        hidden_size: int = 512,
        cell: Literal["lstm", "gru"] = "lstm",
        use_audio: bool = True,
        use_visual: bool = True,
    ):
        super().__init__(
            audio_dim, visual_dim, regions, n_classes, hidden_dim, hidden_size, cell, use_audio, use_visual
        )
        self.L1 = nn.Linear(hidden_dim * 2 * (use_audio + use_visual), 64)
        self.L2 = nn.Linear(64, n_classes)
        self.init_weights()

    def logits(self, audio, video):
        """(class logits [B, T, C], attention [B, T, R] or None)."""
        a, v, alpha = self.encode(audio, video)
        h = torch.cat([x for x in (a, v) if x is not None], -1)
        return self.L2(self.relu(self.L1(self.relu(h)))), alpha


class DMRN(AttentionNet):
    """Dual multimodal residual network (TBMRF_Net, one block by default).

    The residuals are crossed as in the reference code: the new visual state adds the *audio*
    residual and vice versa. The reference initialises only L2 with Xavier.
    """

    xavier = ("L2",)

    def __init__(
        self,
        audio_dim: int,
        visual_dim: int,
        regions: int,
        n_classes: int,
        hidden_dim: int = 128,
        hidden_size: int = 512,
        cell: Literal["lstm", "gru"] = "lstm",
        blocks: int = 1,
    ):
        if blocks < 1:
            raise ParamsError(f"params.yaml: DMRN blocks must be at least 1, got {blocks}")
        super().__init__(audio_dim, visual_dim, regions, n_classes, hidden_dim, hidden_size, cell)
        d = hidden_dim * 2
        self.nb_block = blocks
        self.U_v = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))
        self.U_a = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))
        self.L2 = nn.Linear(d, n_classes)
        self.init_weights()

    def logits(self, audio, video):
        """(class logits [B, T, C], attention [B, T, R])."""
        audio_h, video_h, alpha = self.encode(audio, video)
        for _ in range(self.nb_block):
            merged = 0.5 * (self.U_v(video_h) + self.U_a(audio_h))
            video_h, audio_h = torch.tanh(audio_h + merged), torch.tanh(video_h + merged)
        return self.L2(0.5 * (video_h + audio_h)), alpha


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
    options = check_call(cls, options, f"models.{name}", skip=SHAPES + tuple(fixed))
    for key in POSITIVE:
        if key in options and options[key] < 1:
            raise ParamsError(f"params.yaml: models.{name}.{key} must be a positive integer, got {options[key]!r}")
    return options


# the model sizes: each must be a positive integer (the constructor checks the type)
POSITIVE = ("hidden_dim", "hidden_size", "blocks")


def build(name: str, audio_dim: int, visual_dim: int, regions: int, n_classes: int, **options) -> nn.Module:
    options = check_options(name, options)
    cls, fixed = MODELS[name]
    return cls(audio_dim=audio_dim, visual_dim=visual_dim, regions=regions, n_classes=n_classes, **fixed, **options)


def save_checkpoint(path: Path, model: nn.Module, name: str, options: dict, shapes: dict, **meta) -> None:
    """Everything needed to rebuild the model (name, options, input shapes) plus ``meta``.

    The weights are saved on the CPU, so a model trained on a GPU evaluates anywhere.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(
        path,
        lambda f: torch.save({"model": name, "options": options, "shapes": shapes, "state_dict": state, **meta}, f),
    )


class CheckpointError(RuntimeError):
    """A checkpoint or training state that is refused (not tensors and plain data) or unreadable."""


RECREATE = "delete it and re-create it with `dvc repro`, or restore a trusted copy with `dvc checkout --force {path}`"


def load_tensors(path: Path, map_location: str | torch.device = "cpu", advice: str = RECREATE):
    """``torch.load`` of tensors and plain data only (``weights_only``): a file pulled from a shared
    remote that holds any other object (a pickled callable runs code when unpickled) is refused,
    and a truncated or corrupt one is one line naming it (then ``advice``, formatted with ``path``)."""
    try:
        return torch.load(path, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise CheckpointError(_unreadable(path, e, advice)) from None
        found = re.search(r"GLOBAL (\S+)", str(e))
        raise CheckpointError(
            f"{path}: contains objects other than tensors and plain data"
            f"{f' ({found.group(1)})' if found else ''} and will not be loaded (unpickling it could run code)"
            + (f"; {advice.format(path=path)}" if advice else "")
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CheckpointError(_unreadable(path, e, advice)) from None


def _unreadable(path, e, advice: str) -> str:
    why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0].rstrip(".")[:160]
    return f"{path}: cannot be read, the file is truncated or corrupt ({why})" + (
        f"; {advice.format(path=path)}" if advice else ""
    )


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu", shapes: dict | None = None, caches: str = ""
) -> tuple[nn.Module, dict]:
    """(the model in eval mode on ``device``, the checkpoint's other fields). With ``shapes``
    (``Pair.shapes`` of ``caches``), a model trained on caches of other widths is refused in one line."""
    ck = load_tensors(path)
    missing = [k for k in ("model", "shapes", "options", "state_dict") if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no {', '.join(missing)})")
    if shapes is not None:
        differ = [f"{k} {ck['shapes'].get(k)} vs {v}" for k, v in shapes.items() if ck["shapes"].get(k) != v]
        if differ:
            raise CheckpointError(
                f"{path}: trained on caches of other shapes than {caches or 'these caches'} "
                f"({', '.join(differ)}; checkpoint vs caches); re-run `dvc repro` to train on these caches, "
                "or give the caches it was trained on"
            )
    model = build(ck["model"], **ck["shapes"], **ck["options"])
    model.load_state_dict(ck.pop("state_dict"))
    return model.to(device).eval(), ck


def resolve_device(spec: str = "auto") -> torch.device:
    """params.yaml ``train.device`` as a torch device (``avcache.runtime.torch_device``): ``auto``
    is the GPU if there is one; an explicit ``cuda`` that is not there stops the stage."""
    return runtime.torch_device(spec, "train.device")


def rows(x: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``x[idx]`` (into ``out`` when given), on ``x``'s device.

    On the CPU the rows are copied one by one, as the reference's loader did: torch's index
    gather is ~8x slower on AVE's 1-MB visual rows (95 vs 11 ms for a batch of 64 on 2 cores).
    """
    if x.device.type != "cpu":
        idx = idx.to(x.device)  # no copy when training already moved them (once per epoch)
        return x.index_select(0, idx) if out is None else torch.index_select(x, 0, idx, out=out)
    if out is None:
        out = torch.empty((len(idx), *x.shape[1:]), dtype=x.dtype)
    src, dst = x.numpy(), out.numpy()
    for k, i in enumerate(idx.tolist()):
        dst[k] = src[i]
    return out


@torch.no_grad()
def predict(
    model: nn.Module, audio: torch.Tensor, visual: torch.Tensor, idx: torch.Tensor, batch: int = 256
) -> torch.Tensor:
    """The model's probabilities [len(idx), T, C] for rows ``idx``, in batches, always in fp32.

    The model and the features must be on the same device; the result is on the CPU.
    """
    model.eval()
    return torch.cat(
        [
            model(rows(audio, idx[i : i + batch]), rows(visual, idx[i : i + batch])).cpu()
            for i in range(0, len(idx), batch)
        ]
    )
