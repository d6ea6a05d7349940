"""vq-wav2vec (Baevski et al.) from a fairseq checkpoint (gumbel or k-means): z, quantised q, or c."""
from __future__ import annotations

from extract.extractors.shared.fairseq_wav2vec import FairseqWav2Vec


class VQWav2Vec(FairseqWav2Vec):
    name = "vq_wav2vec"
    release = "vq-wav2vec.pt (gumbel) or vq-wav2vec_kmeans.pt"
    layers = ("z", "q", "c")
    quantized = True
