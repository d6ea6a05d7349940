"""Clip classification (ESC-50, UrbanSound8K, acoustic scenes, any CSV) on cached features."""

from avcache.kernels import pin

pin(mkl_compatible=False)  # before numpy and torch load: portable kernels but MKL's fast branch
