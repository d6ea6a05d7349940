"""Where and in what precision the project computes, for extraction and training alike.

Devices: params.yaml ``extract.device`` and ``train.device`` (``avcache.contract.params.Device``):
``auto`` (CUDA when the framework sees a GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``. A
CUDA device that is asked for and missing stops the stage, naming the param: nothing falls back
to the CPU silently. ``torch_device`` resolves a spec for PyTorch (extractors and training),
``tf_device`` for TensorFlow (models are built and run inside ``tf.device``).

Precision (extraction): ``extract.precision`` ``fp32`` (default), ``bf16`` or ``fp16``. fp32 is
true fp32 on every device: TF32 tensor cores are turned off in PyTorch and TensorFlow, so a cache
computed on a GPU matches the CPU's to float tolerance and switching device never needs a
re-extraction for comparability. bf16/fp16 autocast PyTorch models (``torch.autocast``) and build
Keras models under a mixed dtype policy; graphs whose dtypes are fixed (TF Hub SavedModels,
musicnn's TF1 graph) are fp32 only and say so rather than compute in fp32 while the provenance
says otherwise. Training (``train.precision``: fp32 or bf16 autocast) checks its bf16 here too.

Every error is a ``DeviceError``, a ``ParamsError``: the stages report it like any bad param.
"""

from __future__ import annotations

import contextlib
import logging
import os

from avcache.contract import params as P
from avcache.contract.io import counted

log = logging.getLogger(__name__)


class DeviceError(P.ParamsError):
    """The configured device or precision cannot be used; the message names the param and says what to set."""


def check_device(spec: str, key: str = "extract.device") -> str:
    """``spec`` if it is a device spec, else a DeviceError naming params.yaml ``key``."""
    return P.check_value(key, spec, P.Device, DeviceError)


def check(device: str, precision: str, section: str = "extract") -> None:
    """``<section>.device`` and ``<section>.precision`` are values the project knows."""
    check_device(device, f"{section}.device")
    P.check_value(f"{section}.precision", precision, P.Precision, DeviceError)


def _index(spec: str) -> int:
    return int(spec.split(":")[1]) if ":" in spec else 0


def _no_gpu(spec: str, key: str, framework: str, found: int, why: str) -> DeviceError:
    env = f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}"
    if found:
        return DeviceError(
            f"params.yaml: {key} is {spec!r} but there {'is' if found == 1 else 'are'} only "
            f"{counted(found, 'CUDA device')} visible to "
            f"{framework} ({why}; {env}); use cuda:0 to cuda:{found - 1}, cpu or auto"
        )
    return DeviceError(
        f"params.yaml: {key} is {spec!r} but CUDA is not available here (no CUDA device is visible to "
        f"{framework}: {why}; {env}). Install {framework} with CUDA support and check the driver "
        "(nvidia-smi), or use cpu or auto (auto: CUDA only when present)"
    )


def torch_device(spec: str, key: str = "extract.device"):
    """params.yaml ``key`` as a ``torch.device``: ``auto`` is the current GPU when there is one.

    An explicit ``cuda`` that is not there raises DeviceError naming ``key``, instead of silently
    computing on the CPU (at AVE's scale: hours per training seed)."""
    check_device(spec, key)
    import torch

    if spec == "cpu":
        return torch.device("cpu")
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec == "auto":
        return torch.device("cuda" if found else "cpu")
    if _index(spec) >= found:
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise _no_gpu(spec, key, "PyTorch", found, f"torch {torch.__version__}, {build}")
    return torch.device(spec)


def torch_true_fp32() -> None:
    """fp32 means fp32 on GPUs too: no TF32 in matmuls or cuDNN convolutions."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False  # the algorithm must not change between runs


def quiet_tensorflow() -> None:
    """TensorFlow's C++ log level, set before it is imported (a value already set is kept).

    ``2`` hides its info and warning lines. Where no CUDA driver loads, ``3`` also hides its error
    lines: there the only ones are about the missing GPU (``failed call to cuInit: ... (303)``)
    on every import, which is not the user's problem; errors that matter raise in Python and
    the stage reports them. With a driver, error lines (a driver mismatch) stay visible."""
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
        level = "2"
    except OSError:
        level = "3"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", level)


def tf_device(spec: str, key: str = "extract.device") -> str:
    """``/CPU:0`` or ``/GPU:N`` for TensorFlow; raises DeviceError when CUDA is asked for and missing."""
    check_device(spec, key)
    quiet_tensorflow()
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
            key,
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


def deterministic(seed: int | None = None):
    """Deterministic PyTorch kernels from here on in this process (cuBLAS's fixed workspace, which
    they need on CUDA, included); with ``seed``, Python's, numpy's and torch's generators seeded,
    and a CPU ``torch.Generator`` seeded alike returned for the data order (the same on every
    device). Extraction, training and the clip heads all switch determinism on here."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: before any step
    import torch

    torch.use_deterministic_algorithms(True)
    # deterministic mode also fills every new tensor with NaN to expose reads of uninitialised
    # memory: 8 % of Lite0's time on this CPU, and no op we run reads such memory (same bits)
    torch.utils.deterministic.fill_uninitialized_memory = False
    if seed is None:
        return None
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def tf_deterministic() -> None:
    """Deterministic TensorFlow ops (``tf.config.experimental.enable_op_determinism``)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


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


def check_torch_bf16(device, key: str = "train.precision") -> None:
    """bf16 needs hardware support to pay: stop where there is none on a GPU, warn on a CPU."""
    import torch

    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"params.yaml: {key} is bf16 but {torch.cuda.get_device_name(device)} does not support it; use fp32"
        )
    if device.type == "cpu":
        native = (
            getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
            or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        )
        if not native:
            log.warning(
                "%s bf16 on this CPU runs emulated bf16 kernels (no AMX/AVX512-BF16): "
                "expect it to be slower than fp32 (bench/train_speed.py)",
                key,
            )
        elif os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2":
            log.warning(
                "%s bf16 with oneDNN capped at AVX2 by the portable kernels runs emulated bf16 kernels "
                "(5-6x slower than fp32); this CPU has bf16 units: run with AVCACHE_KERNELS=native "
                "(1.7x faster than fp32 on an AVX512-BF16 CPU, docs/scale.md)",
                key,
            )
