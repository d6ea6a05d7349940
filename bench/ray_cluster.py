"""The Ray engine against two real ``ray start`` nodes (1 CPU each) on this machine, started in a
folder other than the project's: how long the per-node check and the address probe take to
fail, and whether a relative ``dataset.videos`` gives the local engine's bytes.

    PYTHONPATH=. python bench/ray_cluster.py

The numbers in docs/scale.md ("Measured with two `ray start` nodes") come from it. It stops only
the processes of the cluster it started (found by its own ``--temp-dir``), never ``ray stop``.
``RAY_AUTH_MODE=disabled``: Ray 2.60's ``ray start --head`` turns token authentication on
otherwise, and the second node and the stage would need the token.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import make_dataset  # noqa: E402

from avcache.datasets import demo  # noqa: E402
from avcache.datasets.ave import load_ave  # noqa: E402
from avcache.extraction import stage as run  # noqa: E402

VISUAL = {"frames_per_second": 1, "reduction": {"method": "pca", "dim": 16}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def extract(ds, out, **kw):
    return run.run("visual", "efficientnet", VISUAL, ds, ds.videos, out, progress=False, device="cpu", **kw)


def main() -> None:
    os.environ.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    ray = str(Path(sys.executable).with_name("ray"))
    base = Path(tempfile.mkdtemp(prefix="rc-"))
    temp, port = f"/tmp/rayrc{os.getpid()}", free_port()
    (base / "start-here").mkdir()
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        t = time.monotonic()
        head = [ray, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"]
        subprocess.run(head + common, cwd=base / "start-here", check=True, capture_output=True)
        subprocess.run(
            [ray, "start", f"--address=127.0.0.1:{port}", *common],
            cwd=base / "start-here",
            check=True,
            capture_output=True,
        )
        print(f"two nodes started in {time.monotonic() - t:.1f} s")
        demo.generate(base / "demo", videos=12, classes=3, seed=3, progress=False)
        make_dataset(base / "project", base / "demo", {})
        os.chdir(base / "project")
        ds = load_ave(base / "project", videos="AVE")  # relative, as the demo's default
        address = f"127.0.0.1:{port}"
        for what, settings in [
            ("cpus_per_worker: 2", {"address": address, "cpus_per_worker": 2}),
            ("nothing listens", {"address": f"127.0.0.1:{free_port()}"}),
            ("ray:// nothing listens", {"address": f"ray://127.0.0.1:{free_port()}"}),
        ]:
            t = time.monotonic()
            try:
                extract(ds, base / "x" / "e.h5", engine="ray", ray=settings)
            except run.StageError as e:
                print(f"{what}: failed after {time.monotonic() - t:.1f} s: {e}")
        t = time.monotonic()
        local = extract(ds, base / "l" / "e.h5", decode_workers=0)
        print(f"local serial engine: {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        settings = {"address": address, "cpus_per_worker": 1, "decode_workers": 0}
        remote = extract(ds, base / "r" / "e.h5", engine="ray", ray=settings)
        same = local.read_bytes() == remote.read_bytes()
        print(f"ray, 2 nodes, relative videos: {time.monotonic() - t:.1f} s, identical to local: {same}")
    finally:
        mine = [p for p in psutil.process_iter(["cmdline"]) if temp in " ".join(p.info["cmdline"] or [])]
        for p in mine:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(mine, timeout=10)
        for p in alive:
            p.kill()
        print(f"stopped the {len(mine)} processes of this cluster")


if __name__ == "__main__":
    main()
