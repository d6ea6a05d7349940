"""Audio-visual event localization (AVE): AV-att and DMRN models trained on cached features; the
task ``avcache train`` / ``evaluate`` / ``attention`` run on an AVE dataset."""

from avcache.kernels import pin

pin(mkl_compatible=False)  # before numpy and torch load: portable kernels but MKL's fast branch
