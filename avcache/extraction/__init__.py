"""Stage 1: decode videos once, run pretrained extractors, cache per-second features in HDF5."""

from avcache.kernels import pin

pin()  # before numpy, torch or TensorFlow load: portable kernels (avcache/kernels.py)
