"""Portable CPU kernels, so a cache computed on one x86-64 machine has the same bytes on another.

The numeric libraries pick kernels by CPU: TensorFlow turns its oneDNN ops on only on CPUs with
AVX512-VNNI/BF16 or AMX, oneDNN, MKL, OpenBLAS and numpy dispatch to AVX-512 where they find it.
Each choice changes the last bits of a convolution or matrix product, so the same run gave
different caches on an AMD Zen 3 (AVX2) and an Intel AVX-512 machine (musicnn features up to
2.3e-4 apart, 1 - cosine 6e-12). ``pin()`` caps every library at the AVX2 level with the same
kernel choice everywhere. It only sets what the user has not set, and only takes effect before
numpy, torch and TensorFlow are imported: each stage package calls it first thing.

``AVCACHE_KERNELS=native`` leaves the libraries to choose (faster on AVX-512 / AMX machines;
caches then match only caches from the same kind of CPU).
"""

from __future__ import annotations

import os

PORTABLE = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # torch's and TensorFlow's oneDNN
    "TF_ENABLE_ONEDNN_OPTS": "1",  # TensorFlow's default depends on the CPU; on is faster
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "MKL_CBWR": "COMPATIBLE",  # MKL's reproducible branch; its AVX2 branch becomes AUTO on AMD CPUs
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # numpy's own SIMD loops
}
NEEDS_AVX2 = {"OPENBLAS_CORETYPE": "Haswell"}  # forced kernels: an illegal instruction without AVX2


def _cpu_has(*flags: str) -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return False
    return all(flag in words for flag in flags)


def pin(mkl_compatible: bool = True) -> None:
    """``mkl_compatible=False`` (training and evaluation) leaves MKL its fast branch: MKL_CBWR=
    COMPATIBLE made an AV-att training step at AVE's shapes 2x slower on this AMD CPU (1.2 s ->
    2.5 s at batch 64) for bits that only matter to caches, which other stages build on."""
    if os.environ.get("AVCACHE_KERNELS", "portable") != "portable":
        return
    settings = dict(PORTABLE)
    if not mkl_compatible:
        settings.pop("MKL_CBWR")
    if _cpu_has("avx2", "fma"):
        settings.update(NEEDS_AVX2)
    for key, value in settings.items():
        os.environ.setdefault(key, value)


def describe() -> str:
    """The kernel settings in effect, for a cache's provenance."""
    keys = [*PORTABLE, *NEEDS_AVX2]
    return ", ".join(f"{k}={os.environ[k]}" for k in keys if k in os.environ) or "native"
