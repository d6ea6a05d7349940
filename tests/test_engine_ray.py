"""The Ray engine on a real local Ray instance (no mocks): the same bytes as the local engine,
a worker process killed with SIGKILL mid-run, failures reported as they are locally."""

import json
import os
import signal
import sys
import threading
import time

import psutil
import pytest

from avcache.extraction import stage as run

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (requirements-extras.lock)")
pytestmark = pytest.mark.ray

VISUAL = {"frames_per_second": 1, "reduction": {"method": "pca", "dim": 16}}
RAY = {"cpus_per_worker": 1, "decode_workers": 1}  # two actors on a 2-core machine


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module, started as the stage starts it; always shut down."""
    from avcache.extraction import engine_ray

    engine_ray.connect(None)
    try:
        yield ray
    finally:
        ray.shutdown()


def actor_processes():
    """Our Ray actors: descendants of this process (its Ray instance) running the Worker class."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "ray::Worker" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


@pytest.mark.slow
def test_ray_engine_publishes_the_local_engines_bytes(local_ray, demo_ds, tmp_path):
    local = run.run(
        "visual",
        "efficientnet",
        VISUAL,
        demo_ds,
        demo_ds.videos,
        tmp_path / "l" / "e.h5",
        progress=False,
        device="cpu",
        decode_workers=2,
    )
    remote = run.run(
        "visual",
        "efficientnet",
        VISUAL,
        demo_ds,
        demo_ds.videos,
        tmp_path / "r" / "e.h5",
        progress=False,
        device="cpu",
        engine="ray",
        ray=RAY,
    )
    assert local.read_bytes() == remote.read_bytes()
    assert (tmp_path / "l/e.report.json").read_bytes() == (tmp_path / "r/e.report.json").read_bytes()
    assert not list((tmp_path / "r").glob(".e.work-*"))
    deadline = time.time() + 30
    while actor_processes() and time.time() < deadline:  # ray.kill ends them asynchronously
        time.sleep(0.2)
    assert not actor_processes()  # the stage's actors are gone with it


@pytest.mark.slow
def test_failures_on_workers_are_reported_as_locally(local_ray, mixed, tmp_path):
    """Missing and empty files fail on the actors exactly as in this process; the duplicate
    listing is copied by the driver; report and cache are the local engine's."""
    local = run.run(
        "visual",
        "efficientnet",
        VISUAL,
        mixed,
        mixed.videos,
        tmp_path / "l" / "e.h5",
        progress=False,
        device="cpu",
        decode_workers=0,
    )
    remote = run.run(
        "visual",
        "efficientnet",
        VISUAL,
        mixed,
        mixed.videos,
        tmp_path / "r" / "e.h5",
        progress=False,
        device="cpu",
        engine="ray",
        ray=RAY,
    )
    report = (tmp_path / "r/e.report.json").read_text()
    assert report == (tmp_path / "l/e.report.json").read_text()
    assert {f["video"] for f in json.loads(report)["failed"]} == {"missing", "empty"}
    assert remote.read_bytes() == local.read_bytes()


@pytest.mark.slow
def test_a_worker_killed_with_sigkill_loses_and_duplicates_no_row(local_ray, demo_ds, tmp_path, monkeypatch):
    opts = {"reduction": {"method": "none"}}
    reference = run.run(
        "audio",
        "musicnn",
        opts,
        demo_ds,
        demo_ds.videos,
        tmp_path / "l" / "m.h5",
        progress=False,
        device="cpu",
        decode_workers=0,
    )
    writes = []
    put = run.WorkStore.put

    def counted(self, i, *args):  # the real write, counted: every row must be written once
        writes.append(i)
        return put(self, i, *args)

    monkeypatch.setattr(run.WorkStore, "put", counted)
    out, errors = tmp_path / "r" / "m.h5", []

    def stage():
        try:
            run.run(
                "audio",
                "musicnn",
                opts,
                demo_ds,
                demo_ds.videos,
                out,
                progress=False,
                device="cpu",
                engine="ray",
                ray={**RAY, "cpus_per_worker": 2},
            )
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=stage)
    thread.start()
    deadline = time.time() + 300
    while len(writes) < 3 and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    victims = actor_processes()
    assert len(writes) < 12 and len(victims) == 1, "the stage finished (or never started) before the kill"
    before = len(writes)
    os.kill(victims[0].pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive() and not errors, errors
    assert sorted(writes) == list(range(12)) and before < 12  # each row once, none lost
    assert out.read_bytes() == reference.read_bytes()
    report = json.loads((tmp_path / "r/m.report.json").read_text())
    deaths, retries = report.pop("workers"), report.pop("retries")  # what the local report lacks
    assert report == json.loads((tmp_path / "l/m.report.json").read_text())
    assert len(deaths) == 1 and deaths[0]["pid"] == victims[0].pid and deaths[0]["then"].startswith("restarted as pid")
    assert retries and all(r["node"] == deaths[0]["node"] and "worker died" in r["reason"] for r in retries)
    assert {r["video"] for r in retries} <= set(demo_ds.video_ids)
    print(f"killed actor {victims[0].pid} after {before} of 12 rows", file=sys.stderr)


def test_missing_ray_is_named_with_the_extra(monkeypatch, demo_ds, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(
        RuntimeError,
        match=r"Ray is not installed .*Install the `ray` extra: .*"
        r"requirements-extras.lock.*ray==2.60.0",
    ):
        run.run(
            "visual", "efficientnet", VISUAL, demo_ds, demo_ds.videos, tmp_path / "e.h5", progress=False, engine="ray"
        )


@pytest.mark.slow
def test_a_cluster_that_cannot_host_the_actors_says_so(local_ray, demo_ds, tmp_path):
    with pytest.raises(
        run.StageError, match=r"extract.ray.cpus_per_worker is 64 but the largest of the 1 Ray nodes has \d+ CPUs"
    ):
        run.run(
            "visual",
            "efficientnet",
            VISUAL,
            demo_ds,
            demo_ds.videos,
            tmp_path / "e.h5",
            progress=False,
            engine="ray",
            ray={"cpus_per_worker": 64},
        )
    from avcache.extraction.extractors import DeviceError

    with pytest.raises(DeviceError, match=r"extract.device is 'cuda' but the Ray cluster has no GPUs"):
        run.run(
            "visual",
            "efficientnet",
            VISUAL,
            demo_ds,
            demo_ds.videos,
            tmp_path / "e.h5",
            progress=False,
            engine="ray",
            device="cuda",
        )
    assert not list(tmp_path.iterdir())  # nothing started, nothing written
