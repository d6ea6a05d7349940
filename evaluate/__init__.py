"""Evaluation of trained models: segment accuracy, F1, AUC, confusion matrices."""
from avcache.kernels import pin

pin()  # before numpy, torch or TensorFlow load: portable kernels (avcache/kernels.py)
