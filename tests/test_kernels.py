"""Portable kernels: every stage runs with the same kernel choice, whatever the CPU offers."""

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from helpers import DOG, REPO

# the portable kernels are x86-64 instruction levels (AVX2 and below); elsewhere nothing here applies
pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.slow,
    pytest.mark.skipif(
        platform.machine().lower() not in ("x86_64", "amd64"), reason="the portable kernels pin x86-64 levels"
    ),
]


def cpu_has(*flags):
    with open("/proc/cpuinfo") as f:
        words = set(f.read().split())
    return all(flag in words for flag in flags)


EMBED = """
import sys, numpy as np
import avcache.extraction  # pins the kernels first, as every stage does
from avcache.extraction import extractors
from avcache.extraction.reduce import pool_seconds
name, fps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ex = extractors.create(name, {"frames_per_second": fps} if fps else {})
np.save(out, pool_seconds(*ex(ex.decode(sys.argv[4]))))
"""


def run_python(code, *args, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OMP_", "MKL_", "OPENBLAS_", "ONEDNN", "ATEN_", "NPY_", "TF_ENABLE", "AVCACHE_"))
    }
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**clean, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **env},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_stage_processes_use_the_portable_kernels():
    out = run_python(
        "import avcache.extraction, os, json, torch; print(json.dumps({'cap': torch.backends.cpu."
        "get_cpu_capability(), 'env': {k: os.environ.get(k) for k in ('ONEDNN_MAX_CPU_ISA',"
        " 'MKL_CBWR', 'TF_ENABLE_ONEDNN_OPTS')}}))"
    )
    got = json.loads(out.splitlines()[-1])
    # never above the pinned AVX2 (an AVX-512 CPU would say "AVX512"); AVX2 itself wherever the CPU has it
    assert got["cap"] in (("AVX2",) if cpu_has("avx2", "fma") else ("DEFAULT", "NO AVX")), got["cap"]
    assert got["env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE", "TF_ENABLE_ONEDNN_OPTS": "1"}
    native = run_python("import avcache.extraction, os; print(os.environ.get('MKL_CBWR'))", AVCACHE_KERNELS="native")
    assert native.split()[-1] == "None"


def test_features_do_not_depend_on_thread_count_but_do_on_the_kernels(tmp_path):
    """What differs between machines: thread count (not the bits) and kernel choice (the bits,
    which is why every stage pins it)."""

    def embed(name, fps, tag, **env):
        run_python(EMBED, name, str(fps), str(tmp_path / f"{tag}.npy"), str(DOG), **env)
        return np.load(tmp_path / f"{tag}.npy")

    for name, fps in (("efficientnet", 2), ("musicnn", 0)):
        two = embed(name, fps, f"{name}2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
        four = embed(name, fps, f"{name}4", OMP_NUM_THREADS="4", MKL_NUM_THREADS="4")
        assert two.tobytes() == four.tobytes(), name
    other = embed("efficientnet", 2, "sse", ONEDNN_MAX_CPU_ISA="SSE41")  # another CPU's kernels
    effnet = np.load(tmp_path / "efficientnet2.npy")
    assert np.allclose(other, effnet, atol=1e-3)
    if cpu_has("avx2"):  # on a CPU without AVX2, the pinned kernels are the SSE4.1 ones already
        assert other.tobytes() != effnet.tobytes()
