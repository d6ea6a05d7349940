"""Stage 2: lightweight audio-visual models trained on the cached features."""
from avcache.kernels import pin

pin()  # before numpy, torch or TensorFlow load: portable kernels (avcache/kernels.py)
