"""A tiny module of the HEAR 2021 interface, for the ``hear`` extractor's tests: log energies of
4 bands in 0.25-s frames, projected by a linear layer whose weights come from the model file."""

import torch

__version__ = "0.0.1"  # a module on PYTHONPATH, not a distribution: provenance reads this

HOP = 4000  # samples at 16 kHz: a frame every 0.25 s, stamped at its centre


class TinyHEAR(torch.nn.Module):
    sample_rate = 16000
    timestamp_embedding_size = 6
    scene_embedding_size = 6

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 6)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """[n, T, 4] log band energies of the 0.25-s frames."""
        n = audio.shape[1] // HOP
        spec = torch.fft.rfft(audio[:, : n * HOP].reshape(len(audio), n, HOP)).abs() ** 2
        bands = torch.stack([b.sum(-1) for b in spec.tensor_split(4, dim=-1)], -1)
        return torch.log1p(bands)


def load_model(model_file_path: str = "") -> TinyHEAR:
    """Without a path, the module's own weights (a stand-in for a module that fetches them)."""
    if not model_file_path:
        torch.manual_seed(7)
        return TinyHEAR()
    model = TinyHEAR()
    model.load_state_dict(torch.load(model_file_path, weights_only=True))
    return model


def get_timestamp_embeddings(audio: torch.Tensor, model: TinyHEAR):
    emb = model.proj(model.frames(audio))
    ts = (torch.arange(emb.shape[1]) * HOP + HOP / 2) / model.sample_rate * 1000.0
    return emb, ts.expand(len(audio), -1)


def get_scene_embeddings(audio: torch.Tensor, model: TinyHEAR) -> torch.Tensor:
    return model.proj(model.frames(audio)).mean(1)
