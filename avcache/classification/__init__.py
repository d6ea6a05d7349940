"""Clip classification (ESC-50, UrbanSound8K, acoustic scenes, any CSV) on cached features: the
task ``avcache train`` / ``evaluate`` / ``attention`` run on a clip dataset (``heads``: the heads
and the fold protocol; ``cnns``: CNNs on spectrogram caches; ``train``, ``evaluate``,
``attention``: the stages)."""

from avcache.kernels import pin

pin(mkl_compatible=False)  # before numpy and torch load: portable kernels but MKL's fast branch
