"""The Ray engine on a real two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``:
a head and a second node, 1 CPU each, separate raylets), started from another working
directory, as ``ray start`` would be: relative video paths, a node without the videos, a node
lost mid-run, a cluster too small per node and an address where nothing listens.

A node "without the videos" cannot be made on one machine (no mount namespaces here): the
node's raylet gets ``AVCACHE_TEST_UNSEEN`` (engine_ray.UNSEEN_ENV), folders its actors treat
as absent. Only that lookup is simulated; what the driver does with the answer is the real code."""

import json
import os
import signal
import socket
import threading
import time

import pytest
from helpers import make_dataset

from avcache.extraction import engine_ray
from avcache.extraction import stage as run

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (requirements-extras.lock)")
pytestmark = pytest.mark.ray

VISUAL = {"frames_per_second": 1, "reduction": {"method": "pca", "dim": 16}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head + one node, 1 CPU each, started in a folder of their own; node 2 cannot see
    ``hidden_on_2``, neither node can see ``hidden_on_both``. Lost nodes are noticed in ~2 s."""
    from ray.cluster_utils import Cluster

    base = tmp_path_factory.mktemp("cluster")
    elsewhere, on2, both = base / "ray-start-cwd", base / "hidden_on_2", base / "hidden_on_both"
    for d in (elsewhere, on2, both):
        d.mkdir()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        c = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "include_dashboard": False,
                "env_vars": {engine_ray.UNSEEN_ENV: str(both)},
                "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
            },
        )
        second = c.add_node(num_cpus=1, env_vars={engine_ray.UNSEEN_ENV: f"{on2}{os.pathsep}{both}"})
    finally:
        os.chdir(cwd)
    c.second, c.on2, c.both = second, on2, both
    try:
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def ray_settings(cluster, **kw):
    return {"address": cluster.address, "cpus_per_worker": 1, "decode_workers": 0, **kw}


def extract(ds, out, **kw):
    return run.run("visual", "efficientnet", VISUAL, ds, ds.videos, out, progress=False, device="cpu", **kw)


def relative(ds_root, tiny_demo):
    """A 6-video dataset whose videos folder is the relative path ``AVE`` (the demo's default)."""
    from avcache.datasets.ave import load_ave

    make_dataset(ds_root, tiny_demo[0], {})
    return load_ave(ds_root, videos="AVE")


@pytest.mark.slow
def test_relative_videos_are_found_by_actors_started_elsewhere(cluster, tiny_demo, tmp_path, monkeypatch):
    """The actors run where the nodes were started; the driver makes paths absolute, so the
    cache is the local engine's (before: every row masked, 'file not found')."""
    ds = relative(tmp_path / "project", tiny_demo)
    monkeypatch.chdir(tmp_path / "project")
    local = extract(ds, tmp_path / "l" / "e.h5", decode_workers=0)
    remote = extract(ds, tmp_path / "r" / "e.h5", engine="ray", ray=ray_settings(cluster))
    assert remote.read_bytes() == local.read_bytes()
    report = json.loads((tmp_path / "r/e.report.json").read_text())
    assert report["failed"] == [] and "retries" not in report


@pytest.mark.slow
def test_a_node_without_the_videos_hands_them_to_one_that_has_them(cluster, tiny_demo, tmp_path):
    ds = make_dataset(cluster.on2 / "d", tiny_demo[0], {})
    local = extract(ds, tmp_path / "l" / "e.h5", decode_workers=0)
    remote = extract(ds, tmp_path / "r" / "e.h5", engine="ray", ray=ray_settings(cluster))
    assert remote.read_bytes() == local.read_bytes()  # no row masked: all computed on the head
    report = json.loads((tmp_path / "r/e.report.json").read_text())
    assert report["failed"] == []
    assert report["retries"], "node 2 got no video: the test proves nothing"
    second = {r["node"] for r in report["retries"]}
    assert len(second) == 1 and all("no such file on this node" in r["reason"] for r in report["retries"])
    if len(report["retries"]) >= engine_ray.BLIND_AFTER:  # then it was sent no more (in flight: at most 2)
        assert [w["node"] for w in report["workers"] if "blind" in w] == list(second)
        assert len(report["retries"]) <= engine_ray.BLIND_AFTER + 2


@pytest.mark.slow
def test_a_file_no_node_can_read_stops_the_stage_naming_the_nodes(cluster, tiny_demo, tmp_path):
    ds = make_dataset(cluster.both / "d", tiny_demo[0], {})
    node = r"\S+/[0-9a-f]{8}"
    one_video = rf"video \S+ \(.*\): the file is on the driver but no Ray node can read it \(nodes {node}, {node}\)"
    every_video = rf"the Ray nodes left \({node}, {node}\) do not have the videos"  # when both refused 3 first
    with pytest.raises(run.StageError, match=rf"^({one_video}|{every_video})"):
        extract(ds, tmp_path / "e.h5", engine="ray", ray=ray_settings(cluster))
    assert not (tmp_path / "e.h5").exists()


@pytest.mark.slow
def test_actors_larger_than_every_node_fail_in_seconds(cluster, demo_ds, tmp_path):
    """2 CPUs in all, 1 per node: the total fits, no node does (before: a 900 s wait)."""
    t0 = time.monotonic()
    with pytest.raises(
        run.StageError,
        match=r"extract.ray.cpus_per_worker is 2 but the largest of the 2 Ray nodes has 1 CPUs: no actor can be placed",
    ):
        extract(demo_ds, tmp_path / "e.h5", engine="ray", ray=ray_settings(cluster, cpus_per_worker=2))
    assert time.monotonic() - t0 < 30
    with pytest.raises(run.StageError, match=r"extract.ray.workers is 3 but the 2 Ray nodes hold 2 actors"):
        extract(demo_ds, tmp_path / "e.h5", engine="ray", ray=ray_settings(cluster, workers=3))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_nothing_listens_fails_in_seconds(scheme, demo_ds, tmp_path):
    address = f"{scheme}127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(run.StageError, match=rf"extract.ray.address '{address}': nothing answers at 127.0.0.1") as e:
        extract(demo_ds, tmp_path / "e.h5", engine="ray", ray={"address": address})
    assert time.monotonic() - t0 < 10 and "\n" not in str(e.value)
    assert not ray.is_initialized()


@pytest.mark.slow
def test_losing_a_node_mid_run_the_other_carries_on(cluster, demo_ds, tmp_path, monkeypatch):
    """SIGKILL of node 2's raylet: its actor is retired, its videos are done on the head, no
    video is blamed, and the report records the death (before: the stage failed, blaming a video)."""
    reference = extract(demo_ds, tmp_path / "l" / "e.h5", decode_workers=0)
    writes, errors, put = [], [], run.WorkStore.put

    def counted(self, i, *args):
        writes.append(i)
        return put(self, i, *args)

    monkeypatch.setattr(run.WorkStore, "put", counted)
    out = tmp_path / "r" / "e.h5"

    def stage():
        try:
            extract(demo_ds, out, engine="ray", ray=ray_settings(cluster, max_retries=0))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=stage)
    thread.start()
    deadline = time.time() + 300
    while len(writes) < 2 and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    assert len(writes) < 10 and thread.is_alive(), "the stage finished (or never started) before the kill"
    raylet = cluster.second.all_processes["raylet"][0].process
    os.kill(raylet.pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive() and not errors, errors
    assert sorted(writes) == list(range(12))
    assert out.read_bytes() == reference.read_bytes()
    report = json.loads((tmp_path / "r/e.report.json").read_text())
    assert report["failed"] == []
    lost = [w for w in report["workers"] if w["node"] == report["retries"][0]["node"]]
    assert len(lost) == 1 and lost[0]["died"]  # retired once Ray declares the node dead, if the run lasts
    assert lost[0].get("then", "retired: its node is lost") == "retired: its node is lost"
