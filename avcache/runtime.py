"""Where and in what precision an extractor computes: params.yaml ``extract.device`` / ``extract.precision``.

``device``: ``auto`` (CUDA when the extractor's framework sees a GPU, else the CPU), ``cpu``,
``cuda`` or ``cuda:N``. A CUDA device that is asked for and missing stops the stage: nothing
falls back to the CPU silently. PyTorch models and inputs are moved to the device; TensorFlow
models are built and run inside ``tf.device``.

``precision``: ``fp32`` (default), ``bf16`` or ``fp16``. fp32 is true fp32 on every device:
TF32 tensor cores are turned off in PyTorch and TensorFlow, so a cache computed on a GPU matches
the CPU's to float tolerance and switching device never needs a re-extraction for comparability.
bf16/fp16 autocast PyTorch models (``torch.autocast``) and build Keras models under a mixed
dtype policy; graphs whose dtypes are fixed (TF Hub SavedModels, musicnn's TF1 graph) are fp32
only and say so rather than compute in fp32 while the provenance says otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
PRECISIONS = ("fp32", "bf16", "fp16")


class DeviceError(RuntimeError):
    """The configured device or precision cannot be used; the message says what to set."""


def check(device: str, precision: str) -> None:
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise DeviceError(f"params.yaml: extract.device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if precision not in PRECISIONS:
        raise DeviceError(f"params.yaml: extract.precision must be one of {PRECISIONS}, got {precision!r}")


def _index(spec: str) -> int:
    return int(spec.split(":")[1]) if ":" in spec else 0


def _no_gpu(spec: str, framework: str, found: int, why: str) -> DeviceError:
    what = f"only {found} CUDA device(s) are visible" if found else "no CUDA device is visible"
    return DeviceError(
        f"extract.device is {spec!r} but {what} to {framework} ({why}; CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Install {framework} with CUDA support and "
        "check the driver (nvidia-smi), or set extract.device to cpu (or auto: CUDA only when present)."
    )


def torch_device(spec: str) -> str:
    """``cpu`` or ``cuda:N`` for PyTorch; raises DeviceError when CUDA is asked for and missing."""
    if spec == "cpu":
        return "cpu"
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec == "auto":
        return "cuda:0" if found else "cpu"
    if _index(spec) >= found:
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise _no_gpu(spec, "PyTorch", found, f"torch {torch.__version__}, {build}")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    _torch_true_fp32(torch)
    return f"cuda:{_index(spec)}"


def _torch_true_fp32(torch) -> None:
    """fp32 means fp32 on GPUs too: no TF32 in matmuls or cuDNN convolutions."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False  # the algorithm must not change between runs


def tf_device(spec: str) -> str:
    """``/CPU:0`` or ``/GPU:N`` for TensorFlow; raises DeviceError when CUDA is asked for and missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if spec == "cpu":
        return "/CPU:0"
    gpus = tf.config.list_physical_devices("GPU")
    if spec == "auto" and not gpus:
        return "/CPU:0"
    if spec != "auto" and _index(spec) >= len(gpus):
        cuda = tf.sysconfig.get_build_info().get("is_cuda_build", False)
        raise _no_gpu(
            spec,
            "TensorFlow",
            len(gpus),
            f"tensorflow {tf.__version__}, {'a CUDA build' if cuda else 'a build without CUDA'}",
        )
    for gpu in gpus:
        try:  # take GPU memory as needed, not all of it at once
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return f"/GPU:{0 if spec == 'auto' else _index(spec)}"


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


@contextlib.contextmanager
def torch_inference(device: str, precision: str):
    """``torch.inference_mode`` plus autocast to ``precision`` (none for fp32), on ``device``."""
    import torch

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        if device.startswith("cuda"):
            stack.enter_context(torch.cuda.device(device))
        dtype = torch_dtype(precision)
        if dtype is not None:
            stack.enter_context(torch.autocast(device.split(":")[0], dtype=dtype))
        yield


def check_tf_bf16_on_cpu() -> None:
    """TensorFlow hands bf16 convolutions to oneDNN on CPUs with bf16 instructions (AVX512-BF16,
    AMX); with oneDNN capped at AVX2 by the portable kernels (avcache/kernels.py) it then cannot
    create them and every video would fail. One tiny convolution tells, before any video."""
    import tensorflow as tf

    try:
        with tf.device("/CPU:0"):
            tf.nn.conv2d(tf.zeros((1, 4, 4, 1), tf.bfloat16), tf.zeros((1, 1, 1, 1), tf.bfloat16), 1, "SAME")
    except tf.errors.OpError as e:
        raise DeviceError(
            "extract.precision is bf16 but TensorFlow cannot run bf16 convolutions on this CPU under the "
            f"portable kernels (ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}, "
            f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}: {type(e).__name__}). "
            "Run the stage with AVCACHE_KERNELS=native (bf16 caches depend on the hardware anyway), "
            "or set extract.precision: fp32."
        ) from None


@contextlib.contextmanager
def keras_policy(precision: str, device: str = "/CPU:0"):
    """Keras layers built inside take the mixed policy for ``precision`` (compute in bf16/fp16,
    variables in fp32); the global policy is restored afterwards."""
    if precision == "fp32":
        yield
        return
    if precision == "bf16" and device.upper().startswith("/CPU"):
        check_tf_bf16_on_cpu()
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy({"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def describe(device: str | None, precision: str) -> dict:
    """What the cache's provenance records: the kind of device (not its index) and the precision."""
    return {"device": "cpu" if device in (None, "cpu", "/CPU:0") else "cuda", "precision": precision}
