"""Two runs on one cache, a killed DVC, params.yaml rewritten mid-run, a full disk while
publishing, leftovers: each made for real (locks, signals, a tmpfs) and checked.

Extraction here runs the stage's own publishing code on rows from a stand-in engine
(``FakeEngine``): what is tested is the stage around the engine, not a model."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from avcache import runtime as rt
from avcache.contract.dataset import AveDataset, write_dataset
from avcache.extraction import engine
from avcache.extraction import stage as st
from avcache.workdir import OutputBusy, OutputLock

REPO = Path(__file__).resolve().parent.parent
WIDTH = 64


class FakeEngine:
    """Rows computed from the video index (deterministic), as an engine hands them to the stage."""

    def __init__(self, width=WIDTH, during=None):
        self.width, self.during = width, during
        self.describe, self.decoding, self.runtime = {"extractor": "musicnn"}, {}, rt.describe("cpu", "fp32")

    def results(self, tasks):
        for n, task in enumerate(tasks):
            if self.during and n == len(tasks) // 2:
                self.during()
            values = np.random.default_rng(task.index).normal(size=(10, self.width)).astype(np.float32)
            yield task, engine.Row(values, {"source_seconds": 10.0}, [])

    def about(self):
        return "fake engine"

    def close(self):
        pass


def dataset(n=8):
    labels = np.zeros((n, 10, 3), np.uint8)
    labels[:, :, 2] = 1
    split = np.array([0] * (n - 2) + [1, 2], np.int8)
    return AveDataset([f"v{i}" for i in range(n)], ["a", "b"], labels, split, source="synthetic", videos="/nonexistent")


class Fakes:
    options: dict = {}


@pytest.fixture
def fake(monkeypatch):
    """The stage's engine replaced by a ``FakeEngine`` built with ``fake.options``."""
    holder = Fakes()
    holder.options = {}
    monkeypatch.setattr(st, "open_engine", lambda *a, **k: FakeEngine(**holder.options))
    return holder


def extract(out, ds=None, **kw):
    return st.run(
        "audio", "musicnn", {"reduction": {"method": "none"}}, ds or dataset(), "/nonexistent", out, False, **kw
    )


def project(root: Path, n=8) -> Path:
    (root / "features").mkdir(parents=True)
    write_dataset(dataset(n), root / "features/dataset.h5")
    (root / "params.yaml").write_text(
        "extract: {on_failure: mask}\nextractors:\n  musicnn: {reduction: {method: none}}\n"
    )
    return root


MAIN = ["audio", "musicnn", "--dataset", "features/dataset.h5", "--out", "features/audio/musicnn.h5"]


# --- a lock per output ------------------------------------------------------------------


def test_a_second_run_on_the_same_cache_is_refused_naming_the_holder(fake, tmp_path, monkeypatch):
    out = tmp_path / "features/audio/musicnn.h5"
    project(tmp_path)
    monkeypatch.chdir(tmp_path)
    out.parent.mkdir()
    with OutputLock(out):  # another run holds it (flock: a second open file conflicts, even in one process)
        with pytest.raises(OutputBusy, match=rf"{out} is being written by another process \(pid {os.getpid()}"):
            extract(out)
        with pytest.raises(SystemExit) as e:
            st.main(MAIN)
    msg = str(e.value)
    assert msg.count("\n") == 0 and msg.startswith("extract audio/musicnn: features/audio/musicnn.h5 is being written")
    assert f"kill {os.getpid()}" in msg and not out.exists() and not list(out.parent.glob(".musicnn.work-*"))
    extract(out)  # released: the next run goes ahead
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["musicnn.h5", "musicnn.report.json"]


# --- publishing: the cache first, then its report; a leftover temporary file is removed -----


def test_a_run_killed_while_publishing_leaves_the_old_pair_and_the_next_run_cleans_up(fake, tmp_path, monkeypatch):
    from avcache.contract import cache

    out = tmp_path / "m.h5"
    report = st.report_path(out)
    report.write_text('{"old": true}\n')

    def killed(self, valid, policy):
        raise KeyboardInterrupt  # the stage dies with the cache half written

    with monkeypatch.context() as m:
        m.setattr(cache.CacheWriter, "set_valid", killed)
        with pytest.raises(KeyboardInterrupt):
            extract(out)
    assert not out.exists() and json.loads(report.read_text()) == {"old": True}  # no new report beside no cache
    tmp = out.with_name("m.h5.tmp")
    tmp.write_bytes(b"what a kill -9 while publishing leaves")
    extract(out)
    assert out.is_file() and not tmp.exists() and json.loads(report.read_text())["videos"] == 8
    assert not list(tmp_path.glob(".m.work-*"))


# --- params.yaml changed while the stage ran (dvc exp run beside dvc repro) -------------------


def test_params_changed_during_extraction_publish_nothing(fake, tmp_path, monkeypatch):
    project(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = tmp_path / "params.yaml"
    fake.options = {"during": lambda: params.write_text(params.read_text().replace("mask", "stop"))}
    with pytest.raises(SystemExit) as e:
        st.main(MAIN)
    msg = str(e.value)
    assert msg.startswith("extract audio/musicnn: params.yaml changed while this stage ran") and "\n" not in msg
    assert "nothing was published" in msg
    out = tmp_path / "features/audio/musicnn.h5"
    assert not out.exists() and not st.report_path(out).exists()
    assert len(list(out.parent.glob(".musicnn.work-*/rows/*.npz"))) == 8  # kept: the next run only publishes


# --- leftover work folders ---------------------------------------------------------------


def test_a_work_folder_left_beside_a_published_cache_is_reported_with_its_size(fake, tmp_path, caplog):
    old = tmp_path / ".vggish.work-0123456789abcdef"
    (old / "rows").mkdir(parents=True)
    (old / "rows/000000.npz").write_bytes(b"\0" * 2_500_000)
    (tmp_path / "vggish.h5").write_bytes(b"published by DVC's run-cache")
    pending = tmp_path / ".yamnet.work-fedcba9876543210"  # no cache yet: a run will resume it
    pending.mkdir()
    with caplog.at_level(logging.WARNING, "avcache"):
        extract(tmp_path / "m.h5")
    warned = [r.getMessage() for r in caplog.records if ".work-" in r.getMessage()]
    assert warned == [
        f"{old}: 2.5 MB left by a failed run of vggish.h5; that cache has been published since (DVC's run-cache), "
        f"so no run will remove this folder: remove it with `rm -r {old}`"
    ]
    assert old.exists() and pending.exists()  # reported, never removed behind the user's back


# --- the stage dies with DVC ------------------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.parametrize("then", ["", "; true"], ids=["shell-execs", "shell-waits"])
def test_a_stage_stops_when_dvc_is_killed(tmp_path, then):
    """DVC runs ``$SHELL -c cmd``; bash execs a lone command, or waits for it when more follows.
    Either way the stage stops once DVC is SIGKILLed (here a stand-in for DVC: a Python process
    that runs the shell as DVC does and waits)."""
    import psutil

    (tmp_path / "params.yaml").write_text("demo: {videos: 400, classes: 3}\n")
    cmd = ["bash", "-c", f"{sys.executable} -m avcache demo demo{then}"]
    dvc_like = f"import subprocess; subprocess.Popen({cmd!r}).wait()"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_STAGE": "demo"}
    dvc = subprocess.Popen([sys.executable, "-c", dvc_like], cwd=tmp_path, env=env)
    started = []
    try:
        deadline = time.time() + 60
        while not (tmp_path / "data/demo").exists() and time.time() < deadline:  # the stage is at work
            time.sleep(0.1)
        started = [p for p in psutil.Process(dvc.pid).children(recursive=True) if p.cmdline()[0] == sys.executable]
        assert len(started) == 1 and started[0].is_running(), "the demo stage did not start"
        os.kill(dvc.pid, signal.SIGKILL)
        dvc.wait()
        _, alive = psutil.wait_procs(started, timeout=15)
        assert not alive, "the stage outlived DVC"
        assert len(list((tmp_path / "data/demo").rglob("*.mp4"))) < 400
    finally:
        for p in started:
            if p.is_running():
                p.kill()


# --- a full disk while publishing --------------------------------------------------------

FULL_DISK = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_concurrency import FakeEngine
    from avcache.extraction import stage
    stage.open_engine = lambda *a, **k: FakeEngine(width={width})
    stage.main({args!r})
    """
)


def tmpfs_available():
    return (
        shutil.which("unshare")
        and subprocess.run(
            ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.subprocess
@pytest.mark.skipif(not tmpfs_available(), reason="needs unprivileged user namespaces to mount a small tmpfs")
@pytest.mark.parametrize("storage", ["none", "gzip"])
def test_a_full_disk_while_publishing_is_one_line_and_keeps_the_old_cache(tmp_path, storage):
    """A real 3-MB file system: the rows fit (2 MB), the cache does not. Uncompressed, the stage
    sees it before writing; compressed (size unknown in advance) HDF5's write fails mid-cache."""
    root = project(tmp_path / "p", n=16)
    (root / "params.yaml").write_text(
        "extract: {on_failure: mask}\n"
        f"extractors:\n  musicnn: {{reduction: {{method: none}}, storage: {{compression: {storage}}}}}\n"
    )
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK.format(tests=str(REPO / "tests"), width=3072, args=MAIN))
    shell = (
        f"mount -t tmpfs -o size=3m tmpfs {root}/features/audio && cd {root} && "
        f"printf old > features/audio/musicnn.h5 && {sys.executable} {script}; "
        "rc=$?; ls -a features/audio; cat features/audio/musicnn.h5; exit $rc"
    )
    (root / "features/audio").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True, env=env, timeout=300)
    listing, err = p.stdout.split(), p.stderr.strip()
    assert p.returncode == 1, (p.returncode, err)
    lines = [x for x in err.replace("\r", "\n").splitlines() if x.strip() and not x.startswith("audio/musicnn:")]
    assert len(lines) == 1 and "Traceback" not in err and "Exception ignored" not in err, err  # progress bar aside
    err = lines[0]
    assert err.startswith("extract audio/musicnn: cannot write features/audio/musicnn.h5")
    assert ("the disk is full" if storage == "gzip" else "MB free") in err
    assert "finished videos are kept in features/audio/.musicnn.work-" in err
    assert "musicnn.h5.tmp" not in listing and "musicnn.report.json" not in listing
    assert "musicnn.h5" in listing and listing[-1].endswith("old")  # the old cache, untouched


def test_any_stage_run_by_dvc_fails_when_params_changed_while_it_ran(tmp_path, monkeypatch):
    """Stages other than extraction cannot un-write what they wrote, but failing keeps DVC from
    recording the new params in dvc.lock for outputs made with the old ones."""
    import types

    from avcache import cli

    (tmp_path / "params.yaml").write_text("model: av_att\n")
    monkeypatch.chdir(tmp_path)
    stage = types.ModuleType("fake_stage")
    stage.main = lambda argv: (tmp_path / "params.yaml").write_text("model: dmrn\n")  # dvc exp run -S model=dmrn
    monkeypatch.setitem(sys.modules, "fake_stage", stage)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_stage", None, ""))
    monkeypatch.setattr(cli, "die_with_dvc", lambda: None)  # this test process is not run by DVC
    monkeypatch.delenv("DVC_STAGE", raising=False)
    cli.main(["fake"])  # by hand: no guard
    (tmp_path / "params.yaml").write_text("model: av_att\n")
    monkeypatch.setenv("DVC_STAGE", "fake")
    with pytest.raises(SystemExit) as e:
        cli.main(["fake"])
    assert str(e.value).startswith("fake: params.yaml changed while this stage ran") and "\n" not in str(e.value)
    assert "this stage is marked failed" in str(e.value)
