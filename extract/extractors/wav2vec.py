"""wav2vec 1.0 (Schneider et al.) from a fairseq checkpoint: z (encoder) or c (context) frames."""
from __future__ import annotations

from extract.extractors.shared.fairseq_wav2vec import FairseqWav2Vec


class Wav2Vec(FairseqWav2Vec):
    name = "wav2vec"
    release = "wav2vec_large.pt"
