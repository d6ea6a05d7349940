"""Stage 2: lightweight audio-visual models trained on the cached features."""
from avcache.kernels import pin

pin(mkl_compatible=False)  # before numpy and torch load: portable kernels but MKL's fast branch

import os  # noqa: E402

# cuBLAS is deterministic only with a fixed workspace (torch.use_deterministic_algorithms needs it
# on CUDA); set before CUDA starts, i.e. before the first training step.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
