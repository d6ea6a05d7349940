"""Evaluation of trained models: segment accuracy, F1, AUC, confusion matrices."""
from avcache.kernels import pin

pin(mkl_compatible=False)  # before numpy and torch load: portable kernels but MKL's fast branch
