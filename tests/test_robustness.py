"""Bad inputs, failed videos, killed stages, full disks: each made for real and checked."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    AUDIO,
    DATASET,
    PARAMS,
    REPO,
    SMALL,
    STAGE_ARGS,
    VISUAL,
    colour,
    dominant_hz,
    encode,
    make_dataset,
    make_project,
    remux,
)

from avcache.contract.cache import read_features, read_valid
from avcache.contract.dataset import write_dataset
from avcache.datasets.ave import load_ave
from avcache.extraction import extractors
from avcache.extraction import stage as run
from avcache.extraction.reduce import make_reduction
from avcache.media import MediaError, load_audio, load_frames

# --- every bad input: handled and recorded, or failed with the file and the problem named ----


def test_missing_empty_truncated_and_corrupt_files_fail_with_the_reason(tmp_path):
    with pytest.raises(MediaError, match="gone.mp4: file not found"):
        load_audio(tmp_path / "gone.mp4", 16000)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty.mp4: empty file \(0 bytes\)"):
        load_frames(tmp_path / "empty.mp4", 4, (32, 32))
    good = encode(tmp_path / "good.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(good[: len(good) // 3])  # index (moov) at the end: lost
    with pytest.raises(MediaError, match="cut.mp4: cannot open container, the file is corrupt, truncated"):
        load_audio(tmp_path / "cut.mp4", 16000)
    (tmp_path / "garbage.mp4").write_bytes(b"\0" * 64 + good[64:])
    with pytest.raises(MediaError, match="garbage.mp4: (cannot open container|video stream decoded to no frames)"):
        load_frames(tmp_path / "garbage.mp4", 4, (32, 32))


def test_truncated_file_with_index_first_keeps_what_decodes(tmp_path):
    good = encode(tmp_path / "fs.mp4", faststart=True).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(good[: int(len(good) * 0.45)])
    a = load_audio(tmp_path / "cut.mp4", 16000)
    f = load_frames(tmp_path / "cut.mp4", 4, (32, 32))
    assert 1 < a.source_seconds < 9 and a.padded_seconds > 1
    assert 1 < f.source_seconds < 9 and f.held > 4
    assert any("padded" in n for n in a.notes()) and any("repeat the last frame" in n for n in f.notes())


def test_missing_streams_fail_only_the_modality_that_needs_them(tmp_path):
    silent = encode(tmp_path / "silent.mp4", audio=False)
    with pytest.raises(MediaError, match="silent.mp4: no audio stream"):
        load_audio(silent, 16000)
    assert load_frames(silent, 2, (32, 32)).images.shape == (20, 32, 32, 3)
    blind = encode(tmp_path / "blind.mp4", video=False)
    with pytest.raises(MediaError, match="blind.mp4: no video stream"):
        load_frames(blind, 2, (32, 32))
    assert load_audio(blind, 16000).samples.shape == (160000,)


def test_short_and_long_clips_are_padded_or_trimmed_and_recorded(tmp_path):
    a = load_audio(encode(tmp_path / "short.mp4", seconds=3), 16000)
    assert a.samples.shape == (160000,) and 2.9 < a.source_seconds < 3.1 and abs(a.padded_seconds - 7) < 0.1
    assert not a.samples[int(3.1 * 16000) :].any() and a.notes()[0].startswith("audio padded with")
    long = encode(tmp_path / "long.mp4", seconds=14)
    a = load_audio(long, 16000)
    assert a.samples.shape == (160000,) and abs(a.trimmed_seconds - 4) < 0.1
    assert any(n.startswith("audio trimmed to 10 s") for n in a.notes())
    assert abs(dominant_hz(a.samples[9 * 16000 + 2000 : 10 * 16000 - 2000]) - 1200) < 5  # second 9, not 13
    f = load_frames(long, 4, (32, 24))
    assert f.held == 0 and np.abs(f.images[-1, 12, 20].astype(int) - colour(9)).max() < 25


@pytest.mark.parametrize("sr, channels", [(8000, 1), (96000, 1), (44100, 2), (48000, 6)])
def test_unusual_sample_rates_and_channel_counts_are_resampled_and_downmixed(tmp_path, sr, channels):
    a = load_audio(encode(tmp_path / "a.mp4", sr=sr, channels=channels), 16000)
    assert a.samples.shape == (160000,) and (a.source_rate, a.source_channels) == (sr, channels)
    for s in (2, 7):  # the tone of second s is still 300 + 100 s Hz after resampling and downmix
        assert abs(dominant_hz(a.samples[s * 16000 + 2000 : (s + 1) * 16000 - 2000]) - (300 + 100 * s)) < 5
    notes = " ".join(a.notes())
    assert ("upsampled 8000 -> 16000" in notes) == (sr == 8000)
    assert ("downmixed from 6 channels" in notes) == (channels == 6)


@pytest.mark.parametrize("fps, pts", [(5, None), (60, None), ("variable", None)])
def test_frame_rates_including_variable_sample_the_right_second(tmp_path, fps, pts):
    if fps == "variable":  # bursts and gaps: 1 to 40 frames per second
        rng = np.random.default_rng(0)
        pts = np.concatenate([s + rng.random(rng.integers(1, 40)) * 0.999 for s in range(10)])
        pts = np.unique(np.round(np.concatenate([[0.0], pts]), 3))  # millisecond stamps, increasing
        fps = 25
    f = load_frames(encode(tmp_path / "v.mp4", fps=fps, pts=pts), 16, (32, 24))
    for img, t in zip(f.images[::5], f.times[::5]):
        s = int(t)
        assert np.abs(img[12, 20].astype(int) - colour(s)).max() < 25, t


@pytest.mark.parametrize("size", [(16, 16), (1280, 720), (102, 58)])
def test_resolutions_are_resized(tmp_path, size):
    f = load_frames(encode(tmp_path / "r.mp4", size=size, seconds=2), 2, (48, 32))
    assert f.images.shape == (20, 32, 48, 3) and f.source_size == size
    assert f.images[0, 16, 2].min() > 200 and np.abs(f.images[0, 16, 40].astype(int) - colour(0)).max() < 25


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_videos_are_turned_upright(tmp_path, rotation):
    f = load_frames(encode(tmp_path / "rot.mp4", rotation=rotation, seconds=2), 2, (40, 40))
    img = f.images[0].astype(int)
    white = img.min(-1) > 200  # where the stored left stripe ends up once displayed
    where = {90: white[-6:].mean(), -90: white[:6].mean(), 180: white[:, -6:].mean()}[rotation]
    assert where > 0.9 and white.mean() < 0.4
    assert f.rotation == rotation % 360 and any("rotated" in n for n in f.notes())


# --- a stage over a mixed folder: failures recorded, good videos cached as they would be alone ---


@pytest.mark.slow
def test_mixed_folder_good_videos_cached_exactly_as_alone(tiny_demo, tmp_path):
    good_dir, _ = tiny_demo
    bad = {
        "missing": lambda p: None,
        "empty": lambda p: p.write_bytes(b""),
        "noaudio": lambda p: encode(p, audio=False),
        "short": lambda p: encode(p, seconds=2),
        "twice": lambda p: remux(encode(p), p.with_suffix(".mkv")),  # the same video in two files
        "quicktime": lambda p: remux(encode(p.parent.parent / "q.mp4", seconds=4), p.with_suffix(".MOV"), "mov"),
    }
    ds = make_dataset(tmp_path / "d", good_dir, bad)
    out = run.run("audio", "musicnn", {}, ds, ds.videos, tmp_path / "m.h5", progress=False, on_failure="mask")
    feats = read_features(out, ds)
    valid, policy = read_valid(out, ds)
    assert valid.tolist() == [True] * 6 + [False, False, False, True, False, True] and policy == "mask"
    alone = extractors.create("musicnn", {})
    assert run.video_path(ds.videos, "quicktime").name == "quicktime.MOV"
    for i in list(range(6)) + [9, 11]:
        row, _, _ = run.extract_video(alone, make_reduction(None), run.video_path(ds.videos, ds.video_ids[i]))
        assert np.array_equal(feats[i], row)
    assert not feats[6:9].any() and not feats[10].any()
    report = json.loads((tmp_path / "m.report.json").read_text())
    reasons = {f["video"]: f["reason"] for f in report["failed"]}
    assert reasons["missing"].startswith("no file for video missing: looked for missing with .mkv, ")
    assert reasons["missing"].endswith("missing.mp4: file not found")
    assert (
        reasons["empty"] == "empty.mp4: empty file (0 bytes)" and reasons["noaudio"] == "noaudio.mp4: no audio stream"
    )
    assert reasons["twice"] == "2 files for video twice (twice.mkv and twice.mp4); keep one of them in the folder"
    assert str(tmp_path) not in json.dumps(report)  # relative to the videos folder: a report can be shared
    assert [a["video"] for a in report["altered"]] == ["short", "quicktime"]
    assert report["altered"][1]["file"] == "quicktime.MOV"  # the file actually used, recorded
    import h5py

    with h5py.File(out) as f:
        files = [x.decode() for x in f["media/file"][()]]
    assert files[11] == "quicktime.MOV" and files[0].endswith(".mp4") and files[6] == ""  # failed: none
    padded = float(re.match(r"audio padded with ([0-9.]+) s", report["altered"][0]["what"][0]).group(1))
    assert abs(padded - 8) < 0.1


@pytest.mark.slow
def test_silent_audio_is_flagged_and_failing_it_is_a_policy(tiny_demo, tmp_path):
    good_dir, _ = tiny_demo
    silence = {"silent": lambda p: encode(p, amplitude=0), "hush": lambda p: encode(p, seconds=4, amplitude=0)}
    ds = make_dataset(tmp_path / "d", good_dir, silence)
    opts = {"reduction": {"method": "none"}}
    with pytest.raises(run.StageError, match="2 videos failed and extract.on_failure is 'stop'"):
        run.run(
            "audio", "musicnn", opts, ds, ds.videos, tmp_path / "m.h5", progress=False, on_failure="stop", silent="fail"
        )
    report = json.loads((tmp_path / "m.report.json").read_text())
    assert [(f["video"], f["reason"]) for f in report["failed"]] == [
        ("silent", "silent.mp4: the audio is digital silence and extract.silent is 'fail'"),
        ("hush", "hush.mp4: the audio is digital silence and extract.silent is 'fail'"),
    ]
    flagged = [(s["row"], s["video"], s["file"], s["peak"]) for s in report["silent"]]
    assert flagged == [(6, "silent", "silent.mp4", 0.0), (7, "hush", "hush.mp4", 0.0)]
    # keep (the default): the rows are kept, resumed from the work folder, and still flagged
    out = run.run("audio", "musicnn", opts, ds, ds.videos, tmp_path / "m.h5", progress=False, on_failure="stop")
    report = json.loads((tmp_path / "m.report.json").read_text())
    assert not report["failed"] and [s["video"] for s in report["silent"]] == ["silent", "hush"]
    feats = read_features(out, ds)
    assert read_valid(out, ds)[0].all() and np.array_equal(feats[6], feats[7])  # two silences: one row
    assert not any(np.array_equal(feats[6], feats[i]) for i in range(6))
    import h5py

    with h5py.File(out) as f:
        assert "silent_peak" not in f["media"] and "silent_policy" not in json.dumps(dict(f.attrs), default=str)


@pytest.mark.slow
def test_stop_policy_then_fixing_the_video_lets_the_rerun_finish(tiny_demo, tmp_path):
    good_dir, _ = tiny_demo
    ds = make_dataset(tmp_path / "d", good_dir, {"later": lambda p: p.write_bytes(b"")})
    opts = {"reduction": {"method": "none"}}
    with pytest.raises(run.StageError, match="1 video failed"):
        run.run("audio", "musicnn", opts, ds, ds.videos, tmp_path / "m.h5", progress=False, on_failure="stop")
    shutil.copy(good_dir / "AVE" / f"{ds.video_ids[0]}.mp4", tmp_path / "d" / "AVE" / "later.mp4")
    out = run.run("audio", "musicnn", opts, ds, ds.videos, tmp_path / "m.h5", progress=False, on_failure="stop")
    feats = read_features(out, ds)
    assert read_valid(out, ds)[0].all() and np.array_equal(feats[6], feats[0])


@pytest.mark.slow
def test_a_video_replaced_after_a_crash_is_extracted_again(tiny_demo, tmp_path):
    good_dir, _ = tiny_demo
    ds = make_dataset(tmp_path / "d", good_dir, {})
    opts = {"reduction": {"method": "none"}}
    first = read_features(run.run("audio", "musicnn", opts, ds, ds.videos, tmp_path / "a.h5", progress=False), ds)
    # a killed stage left video 0's row behind; then that video's file is replaced
    out = tmp_path / "b.h5"
    work = run.WorkStore(out, run.work_key("audio", "musicnn", {}, opts["reduction"], ds, ds.videos))
    path0 = run.video_path(ds.videos, ds.video_ids[0])
    work.put(
        0, *run.extract_video(extractors.create("musicnn", {}), make_reduction(None), path0), run.file_stamp(path0)
    )
    time.sleep(0.01)
    shutil.copy(run.video_path(ds.videos, ds.video_ids[1]), path0)
    assert not work.done(0, run.file_stamp(path0))
    again = read_features(run.run("audio", "musicnn", opts, ds, ds.videos, out, progress=False), ds)
    assert np.array_equal(again[0], first[1]) and not np.array_equal(again[0], first[0])


@pytest.mark.slow
def test_an_error_that_is_not_the_files_fault_names_the_video_and_keeps_the_others(tiny_demo, tmp_path, monkeypatch):
    good_dir, _ = tiny_demo
    ds = make_dataset(tmp_path / "d", good_dir, {})
    from avcache.extraction.extractors.musicnn import Musicnn

    real = Musicnn.embed

    def embed(self, samples):  # a model that breaks on the third video it sees
        embed.calls += 1
        if embed.calls == 3:
            raise RuntimeError("out of memory")
        return real(self, samples)

    embed.calls = 0
    monkeypatch.setattr(Musicnn, "embed", embed)
    opts = {"reduction": {"method": "none"}}
    with pytest.raises(
        run.StageError,
        match=rf"video {ds.video_ids[2]} \(.*{ds.video_ids[2]}.mp4\): "
        r"RuntimeError: out of memory. Finished videos are kept",
    ):
        run.run("audio", "musicnn", opts, ds, ds.videos, tmp_path / "m.h5", progress=False)
    assert len(list((tmp_path).glob(".m.work-*/rows/*.npz"))) == 2 and not (tmp_path / "m.h5").exists()


def test_unwritable_output_folder_fails_before_any_work(tiny_demo, tmp_path):
    root, _ = tiny_demo
    ds = load_ave(root)
    (tmp_path / "blocked").write_text("a file where the output folder should be")
    with pytest.raises(run.StageError, match="cannot write to .*blocked/audio"):
        run.run("audio", "musicnn", {}, ds, root / "AVE", tmp_path / "blocked" / "audio" / "m.h5", progress=False)


# --- crash safety: real signals, real file-size limits ------------------------------------


def project(path, videos_dir_src, n=None):
    """A project folder (params.yaml + features/dataset.h5) for running the stages as DVC does."""
    (path / "features").mkdir(parents=True)
    ds = load_ave(videos_dir_src, videos=str(videos_dir_src / "AVE"))
    write_dataset(ds, path / "features" / "dataset.h5")
    (path / "params.yaml").write_text(
        "extract: {on_failure: mask}\nextractors:\n  musicnn: {reduction: {method: none}}\n"
    )
    return path


EXTRACT = (
    "avcache.extraction.stage",
    "audio",
    "musicnn",
    "--dataset",
    "features/dataset.h5",
    "--out",
    "features/audio/musicnn.h5",
)


def stage(cwd, *args, limit_bytes=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit if limit_bytes else None,
    )


@pytest.fixture(scope="module")
def reference_cache(demo20, tmp_path_factory):
    """An uninterrupted run of the audio stage, to compare resumed runs with."""
    root = project(tmp_path_factory.mktemp("ref"), Path(demo20.source))
    p = stage(root, *EXTRACT)
    assert p.wait(timeout=600) == 0, p.stderr.read()
    return root / "features" / "audio"


def rows_done(root):
    return len(list((root / "features" / "audio").glob(".musicnn.work-*/rows/*.npz")))


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_mid_extraction_then_resume_gives_the_same_cache(demo20, reference_cache, tmp_path):
    root = project(tmp_path / "p", Path(demo20.source))
    p = stage(root, *EXTRACT)
    deadline = time.time() + 300
    while rows_done(root) < 4 and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert p.poll() is None, "the stage finished before it could be killed"
    import psutil

    workers = psutil.Process(p.pid).children(recursive=True)  # its decode worker processes
    assert workers, "the stage runs the pipelined engine (extract.decode_workers defaults to auto)"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)  # they notice and exit on their own
    assert not alive, f"decode workers outlived the killed stage: {alive}"
    done = rows_done(root)
    assert 4 <= done < 20 and not (root / "features/audio/musicnn.h5").exists()
    stamps = {f: f.stat().st_mtime_ns for f in (root / "features/audio").glob(".musicnn.work-*/rows/*.npz")}
    p = stage(root, *EXTRACT)
    seen = {}
    while p.poll() is None:  # the finished rows are reused, not rewritten
        for f in list(stamps):
            if f.exists():
                seen[f] = f.stat().st_mtime_ns
        time.sleep(0.05)
    assert p.returncode == 0, p.stderr.read()
    assert f"resuming audio/musicnn: {done} of 20 videos already done" in p.stderr.read()
    assert all(seen[f] == stamps[f] for f in seen) and seen
    for name in ("musicnn.h5", "musicnn.report.json"):
        assert (root / "features/audio" / name).read_bytes() == (reference_cache / name).read_bytes()
    assert not list((root / "features/audio").glob(".musicnn.work-*"))  # removed once published


@pytest.mark.slow
@pytest.mark.subprocess
def test_full_disk_is_a_clear_error_and_keeps_finished_work(demo20, reference_cache, tmp_path):
    root = project(tmp_path / "p", Path(demo20.source))
    p = stage(root, *EXTRACT, limit_bytes=60_000)  # rows fit, the cache does not
    assert p.wait(timeout=600) != 0
    err = p.stderr.read()
    assert "cannot write" in err and "a file grew past the size limit" in err
    assert "finished videos are kept in features/audio/.musicnn.work-" in err and "will not be recomputed" in err
    assert rows_done(root) == 20 and not (root / "features/audio/musicnn.h5").exists()
    assert not list((root / "features/audio").glob("*.tmp"))
    p = stage(root, *EXTRACT)
    assert p.wait(timeout=600) == 0, p.stderr.read()
    assert "resuming audio/musicnn: 20 of 20" in p.stderr.read()
    assert (root / "features/audio/musicnn.h5").read_bytes() == (reference_cache / "musicnn.h5").read_bytes()


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_mid_training_resumes_to_the_same_models(tmp_path):
    import torch

    params = PARAMS.replace("epochs: 15", "epochs: 60").replace("seeds: [0, 1]", "seeds: [0]")
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    for d in (ref, crash):
        d.mkdir()
        make_project(d)
        (d / "params.yaml").write_text(params)
    p = stage(ref, "avcache.localization.train", *STAGE_ARGS, "--live", "dvclive")
    assert p.wait(timeout=600) == 0, p.stderr.read()
    p = stage(crash, "avcache.localization.train", *STAGE_ARGS, "--live", "dvclive")
    state = None
    deadline = time.time() + 300
    while p.poll() is None and time.time() < deadline:
        states = list(crash.glob(".models.work/*/seed0.state.pt"))
        if states:
            try:
                if torch.load(states[0], weights_only=False)["epoch"] >= 5:
                    state = states[0]
                    break
            except Exception:
                pass
        time.sleep(0.02)
    assert state is not None and p.poll() is None, "training finished before it could be killed"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (crash / "models/seed0.pt").exists()
    p = stage(crash, "avcache.localization.train", *STAGE_ARGS, "--live", "dvclive")
    assert p.wait(timeout=600) == 0, p.stderr.read()
    a = torch.load(ref / "models/seed0.pt", weights_only=False)
    b = torch.load(crash / "models/seed0.pt", weights_only=False)
    assert a["summary"] == b["summary"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert (ref / "dvclive/plots/metrics/seed0/val/acc.tsv").read_text() == (
        crash / "dvclive/plots/metrics/seed0/val/acc.tsv"
    ).read_text()
    assert not list(crash.glob(".models.work/*"))


@pytest.mark.slow
def test_corrupt_training_state_restarts_the_seed_cleanly(tmp_path, monkeypatch):

    from avcache.localization import train

    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    data = train.load_data(DATASET, AUDIO, VISUAL)
    recipe = train.Recipe(epochs=6, batch_size=8, seeds=[0])
    clean, s1 = train.train_one("av_att", SMALL, data, recipe, 0, None, progress=False)
    state = tmp_path / "seed0.state.pt"
    state.write_bytes(b"\x80\x02 not a checkpoint")
    again, s2 = train.train_one("av_att", SMALL, data, recipe, 0, None, progress=False, state_path=state)
    assert s1 == s2 and all(
        np.array_equal(a, b) for a, b in zip(clean.state_dict().values(), again.state_dict().values())
    )
