"""The extraction stage: one extractor over every video of the dataset, into one HDF5 cache.

    python -m avcache extract audio musicnn --dataset features/dataset.h5 --out features/audio/musicnn.h5
    # reads params.yaml `extractors.musicnn` and `extract`
    python -m avcache extract audio --dataset features/dataset.h5 --out features/audio
    # the DVC stage: the extractor params.yaml `audio` names, into features/audio/<name>.h5

Each video is decoded once and reduced to per-second features (mean of the frames in [t, t+1)).
Where the model runs (``extract.device``, ``extract.precision``) and what computes the rows
(``avcache.extraction.engine``: ``local`` with ``decode_workers`` processes decoding ahead, or ``ray``
actors on a cluster; ``avcache/extraction/engine.py``) change neither the rows nor how they are kept.
Every finished video is saved at once in a work folder beside the cache, so a killed stage
resumes where it stopped, and a video that cannot be decoded is recorded and skipped instead of
stopping the others. When all videos are done, a reduction fitted on data (``pca``) is fitted on
the training split's rows, the cache is written under a temporary name and renamed into place,
a report of every failed or altered video is written beside it, and the work folder is removed.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path

import av
import h5py
import numpy as np
from tqdm import tqdm

from avcache import kernels, lineage, media
from avcache import runtime as rt
from avcache.contract import params as P
from avcache.contract.cache import CacheWriter, Storage
from avcache.contract.dataset import SEGMENTS, Dataset, DatasetError, read_dataset
from avcache.contract.io import atomic_write, counted
from avcache.contract.params import ExtractParams, RayParams
from avcache.extraction import engine, extractors
from avcache.extraction.reduce import Reduction, make_reduction
from avcache.media import MediaError
from avcache.process import ParamsGuard, die_with_dvc
from avcache.workdir import OutputBusy, OutputLock, WorkDir, stale_work_folders

log = logging.getLogger(__name__)


class StageError(RuntimeError):
    """The stage cannot publish a cache; the message says why and what to do."""


def code_sha256(name: str) -> str:
    """Hash of exactly the project files the stage extracting ``name`` runs (avcache.lineage)."""
    return lineage.fingerprint(f"extract/{name}")["sha256"]


def video_path(videos: str | Path, vid: str, relative: str | None = None) -> Path:
    """A video's file: found by id (AVE), or the dataset's own path for it (clip datasets)."""
    if relative is None:
        return media.find_video(videos, vid)
    path = Path(videos) / relative
    media.local_url(path)  # a CSV path that names an FFmpeg protocol (concat:, http:, pipe:) is refused
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    return path


def video_stamp(videos: str | Path, vid: str, relative: str | None = None) -> str:
    """The stamp of the file a video resolves to; a failed lookup fails the video later, not here."""
    try:
        return file_stamp(video_path(videos, vid, relative))
    except MediaError:
        return "missing"


def extract_video(extractor, reduction: Reduction, path: Path) -> tuple[np.ndarray, dict, list[str]]:
    """Per-second features [10, ...] of one video, what decoding did (numbers) and notes for people.

    A pure function of the file and the configuration."""
    row = engine.finish(extractor, reduction, extractor.decode(path))
    return row.values, row.facts, row.notes


def file_stamp(path: Path) -> str:
    """Size and modification time: a row is reused only while its video file is unchanged."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


class WorkStore(WorkDir):
    """Finished per-video results of one extraction configuration, one file each, written
    atomically, in the work folder ``.<cache name>.work-<key>`` beside the cache.

    Rows are kept across runs (a killed stage resumes); failures are kept only within a run, so
    a video that was fixed or replaced is tried again.
    """

    def __init__(self, out: Path, key: str, parent: Path | None = None):
        super().__init__(out.parent if parent is None else parent, f".{out.stem}.work-", key)
        (self.dir / "rows").mkdir(exist_ok=True)
        shutil.rmtree(self.dir / "failed", ignore_errors=True)
        (self.dir / "failed").mkdir()

    def _row(self, i):
        return self.dir / "rows" / f"{i:06d}.npz"

    def _fail(self, i):
        return self.dir / "failed" / f"{i:06d}.json"

    def done(self, i: int, stamp: str) -> bool:
        if self._fail(i).exists():
            return True
        if not self._row(i).exists():
            return False
        with np.load(self._row(i)) as z:
            return str(z["stamp"]) == stamp

    def put(self, i: int, row: np.ndarray, facts: dict, notes: list[str], stamp: str) -> None:
        atomic_write(
            self._row(i),
            lambda f: np.savez(
                f, row=row, facts=np.array(json.dumps(facts)), notes=np.array(json.dumps(notes)), stamp=np.array(stamp)
            ),
        )

    def fail(self, i: int, reason: str) -> None:
        atomic_write(self._fail(i), lambda f: f.write(json.dumps({"reason": reason}).encode()))

    def get(self, i: int) -> tuple[np.ndarray, dict, list[str]]:
        with np.load(self._row(i)) as z:
            return z["row"], json.loads(str(z["facts"])), json.loads(str(z["notes"]))

    def meta(self, i: int) -> tuple[dict, list[str]]:
        """(facts, notes) of a saved row, without loading its features."""
        with np.load(self._row(i)) as z:
            return json.loads(str(z["facts"])), json.loads(str(z["notes"]))

    def failure(self, i: int) -> str | None:
        p = self._fail(i)
        return json.loads(p.read_text())["reason"] if p.exists() else None


def work_key(
    modality: str, name: str, options: dict, reduction_cfg, dataset: Dataset, videos, runtime: dict | None = None
) -> str:
    """Everything a finished row depends on besides its video file (the device kind and the
    precision too: a resumed run does not mix rows computed differently)."""
    parts = [modality, name, options, reduction_cfg, code_sha256(name), dataset.order_sha256, str(videos)]
    if dataset.max_seconds != SEGMENTS:  # keys of 10-s datasets stay as they were
        parts.append(dataset.max_seconds)
    if runtime and runtime != rt.describe("cpu", "fp32"):
        parts.append(runtime)  # the CPU in fp32 keeps the keys work folders had before
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def relative_reason(reason: str, videos: str | Path) -> str:
    """``reason`` with the videos folder taken out of the paths it names (``<videos>/a/b.mp4``:
    ``a/b.mp4``; a message about the folder itself starts at what it says)."""
    for base in dict.fromkeys((str(Path(videos)), str(Path(videos).resolve()))):
        if base == ".":  # paths under "." carry no prefix
            continue
        reason = reason.removeprefix(f"{base}: ").replace(base + os.sep, "")
    return reason


def report_path(out: Path) -> Path:
    return out.with_name(out.stem + ".report.json")


def check_writable(folder: Path) -> None:
    """Fail before any work if the output folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise StageError(f"cannot write to {folder} ({e.strerror or e}); make it writable and re-run") from None


def check_space(out: Path, n: int, shape: tuple[int, ...], storage: Storage, kept: Path) -> None:
    """Refuse to start writing an uncompressed cache that cannot fit on the disk (a compressed
    one's size is unknown: a full disk then fails the write, one line too)."""
    need = n * int(np.prod(shape)) * np.dtype(storage.dtype).itemsize
    free = shutil.disk_usage(out.parent).free
    if storage.compression == "none" and need > free:
        raise StageError(
            f"cannot write {out}: it needs {need / 1e6:.1f} MB and {out.parent} has {free / 1e6:.1f} MB free. "
            f"Free space and re-run `dvc repro`: finished videos are kept in {kept} and will not be recomputed"
        )


class LocalEngine:
    """The model in this process; decoding here (``decode_workers: 0``) or in worker processes."""

    def __init__(
        self, name: str, options: dict, reduction: Reduction, device: str, precision: str, decode_workers: int
    ):
        self.extractor = extractors.create(name, options, device, precision)
        self.reduction, self.decode_workers = reduction, decode_workers
        self.describe, self.decoding = self.extractor.describe(), self.extractor.decoding()
        self.runtime = self.extractor.runtime()

    def results(self, tasks):
        return engine.run_local(self.extractor, self.reduction, tasks, self.decode_workers)

    def about(self) -> str:
        how = f"{self.decode_workers} decode workers" if self.decode_workers else "serial"
        return f"local engine ({how}), {self.extractor.device}, {self.runtime['precision']}"

    def close(self):
        pass


def open_engine(name, options, reduction, reduction_cfg, device, precision, engine_name, decode_workers, ray):
    P.check_value("extract.engine", engine_name, P.Engine)
    if engine_name == "ray":
        from avcache.extraction import engine_ray

        try:
            return engine_ray.RayEngine(name, options, reduction_cfg, device, precision, ray)
        except engine_ray.RayMissing as e:
            raise StageError(str(e)) from None
    return LocalEngine(name, options, reduction, device, precision, engine.decode_workers(decode_workers))


def run(
    modality: str,
    name: str,
    options: dict,
    dataset: Dataset,
    videos: str | Path,
    out: Path,
    progress: bool = True,
    on_failure: str = "mask",
    *,
    device: str = "auto",
    precision: str = "fp32",
    engine: str = "local",
    decode_workers: int | str = "auto",
    ray: RayParams | dict | None = None,
    silent: str = "keep",
    before_publish=None,
    work_parent: Path | None = None,
) -> Path:
    """Extract every video of ``dataset`` with extractor ``name`` into the cache ``out``.

    ``device``, ``precision``, ``engine``, ``decode_workers``, ``ray`` and ``silent`` are
    params.yaml's ``extract`` options; the rows, the report and the published cache do not
    depend on the engine (nor on its settings). The whole run holds a lock on ``out`` (``OutputLock``);
    ``before_publish()``, when given, is called once every video is done and may raise
    ``StageError`` to publish nothing (params.yaml changed meanwhile). ``work_parent``: where the
    work folder goes (default: beside the cache; the DVC stage puts it outside its output folder,
    which DVC empties before a run)."""
    P.check_value("extract.on_failure", on_failure, P.OnFailure)
    P.check_value("extract.silent", silent, P.Silent)
    if not isinstance(ray, RayParams):
        ray = P.from_params(RayParams, ray, "extract.ray")
    out = Path(out)
    check_writable(out.parent)
    options = dict(options)
    reduction_cfg = options.pop("reduction", None)
    reduction = make_reduction(reduction_cfg)
    storage = P.from_params(Storage, options.pop("storage", None), f"extractors.{name}.storage")
    if reduction.needs_fit and not len(dataset.indices("train")):
        raise P.ParamsError(
            f"extractors.{name}.reduction is {reduction.method!r}, fitted on the training split, "
            f"but {dataset.source} has none (a {dataset.kind} dataset with folds): use "
            "reduction 'mean' or 'none' here and the clip head's `pca` option, which is "
            "fitted on each fold's training clips"
        )
    if extractors.get(name).modality != modality:
        raise ValueError(f"extractor {name} is {extractors.get(name).modality}, listed under {modality}")
    with OutputLock(out):
        stale_tmp = out.with_name(out.name + ".tmp")
        if stale_tmp.exists():  # a run killed while publishing; nobody else writes it (we hold the lock)
            log.info("removing %s, left by a run killed while publishing", stale_tmp)
            stale_tmp.unlink()
        report_leftovers(out)
        return _run_engine(
            name,
            options,
            reduction,
            reduction_cfg,
            storage,
            dataset,
            videos,
            out,
            progress,
            on_failure,
            modality,
            (device, precision, engine, decode_workers, ray),
            silent,
            before_publish,
            work_parent,
        )


def _run_engine(
    name,
    options,
    reduction,
    reduction_cfg,
    storage,
    dataset,
    videos,
    out,
    progress,
    on_failure,
    modality,
    settings,
    silent,
    before_publish,
    work_parent=None,
) -> Path:
    backend = open_engine(name, options, reduction, reduction_cfg, *settings)
    try:
        return _run(
            backend,
            modality,
            name,
            options,
            reduction,
            reduction_cfg,
            dataset,
            videos,
            out,
            progress,
            on_failure,
            storage,
            silent,
            before_publish,
            work_parent,
        )
    finally:
        backend.close()


def report_leftovers(out: Path) -> None:
    """Warn about other caches' work folders that no run will remove (their cache is published)."""
    for work, cache, size in stale_work_folders(out.parent):
        if cache != out:
            log.warning(
                "%s: %.1f MB left by a failed run of %s; that cache has been published since (DVC's run-cache), "
                "so no run will remove this folder: remove it with `rm -r %s`",
                work,
                size / 1e6,
                cache.name,
                work,
            )


def _run(
    backend,
    modality,
    name,
    options,
    reduction,
    reduction_cfg,
    dataset,
    videos,
    out,
    progress,
    on_failure,
    storage,
    silent_policy="keep",
    before_publish=None,
    work_parent=None,
) -> Path:
    ids = dataset.video_ids
    work = WorkStore(
        out, work_key(modality, name, options, reduction_cfg, dataset, videos, backend.runtime), work_parent
    )
    relative = dataset.relative_paths()
    stamps = [video_stamp(videos, vid, rel) for vid, rel in zip(ids, relative)]
    done_before = sum(work.done(i, stamps[i]) for i in range(len(ids)))
    if done_before:
        total = counted(len(ids), "video")
        log.info("resuming %s/%s: %d of %s already done in %s", modality, name, done_before, total, work.dir)
    first_row, tasks, copies = {}, [], {}  # AVE lists a few videos twice (two classes): decode each file once
    for i, vid in enumerate(ids):
        if work.done(i, stamps[i]):
            first_row.setdefault(vid, i)
        elif vid in first_row:
            copies.setdefault(first_row[vid], []).append(i)
        else:
            first_row[vid] = i
            try:
                tasks.append(engine.Task(i, vid, video_path(videos, vid, relative[i]), seconds=dataset.max_seconds))
            except MediaError as e:
                tasks.append(engine.Task(i, vid, None, str(e)))
    if tasks:
        log.info("%s/%s: %s to extract on the %s", modality, name, counted(len(tasks), "video"), backend.about())
    bar = tqdm(
        total=len(ids),
        initial=done_before,
        desc=f"{modality}/{name}",
        unit="video",
        disable=not progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )

    def copy_rows(src: int) -> None:
        for i in copies.pop(src, []):
            reason = work.failure(src)
            if reason is None:
                work.put(i, *work.get(src), stamps[i])
            else:
                work.fail(i, reason)
            bar.update(1)

    for src in [s for s in copies if work.done(s, stamps[s])]:  # finished in an earlier run
        copy_rows(src)
    results = backend.results(tasks)
    try:
        for task, result in results:
            if isinstance(result, engine.Row):
                work.put(task.index, result.values, result.facts, result.notes, stamps[task.index])
            elif isinstance(result, engine.Failed):
                work.fail(task.index, result.reason)
            else:  # an engine.Error, not the file's fault: stop, naming the video, keep the rest
                if result.traceback:
                    log.error("video %s: %s", task.video, result.traceback.rstrip())
                path = task.path or Path(videos) / task.video
                raise StageError(
                    f"video {task.video} ({path}): {result.what}. Finished videos are "
                    f"kept in {work.dir}; fix the cause and re-run"
                )
            bar.update(1)
            copy_rows(task.index)
    finally:
        results.close()
    bar.close()

    failed = {i: relative_reason(r, videos) for i in range(len(ids)) if (r := work.failure(i)) is not None}
    metas = {i: work.meta(i) for i in range(len(ids)) if i not in failed}
    silent = {i: facts for i, (facts, _) in metas.items() if engine.SILENT in facts}
    if silent:
        log.warning(
            "%s/%s: %d of %s %s digital silence (policy %s); see %s",
            modality,
            name,
            len(silent),
            counted(len(ids), "video"),
            "is" if len(silent) == 1 else "are",
            silent_policy,
            report_path(out),
        )
    if silent_policy == "fail":
        for i, facts in silent.items():
            failed[i] = f"{facts['file']}: the audio is digital silence and extract.silent is 'fail'"
    notes = {i: m for i, m in metas.items() if i not in failed and m[1]}
    engine_report = backend.report() if hasattr(backend, "report") else {}

    def report() -> None:
        write_report(report_path(out), modality, name, ids, failed, notes, on_failure, silent, engine_report)

    if failed:
        log.warning(
            "%s/%s: %d of %s failed (policy %s); see %s",
            modality,
            name,
            len(failed),
            counted(len(ids), "video"),
            on_failure,
            report_path(out),
        )
    if failed and on_failure == "stop":
        report()
        raise StageError(
            f"{counted(len(failed), 'video')} failed and extract.on_failure is 'stop': see "
            f"{report_path(out)}. The other videos are kept in {work.dir}; fix or remove "
            "the failed ones (or choose 'exclude' / 'mask') and re-run"
        )
    valid = np.array([i not in failed for i in range(len(ids))])
    if not valid.any():
        report()
        raise StageError(f"every video failed; see {report_path(out)}")
    if reduction.needs_fit:
        fit_rows = [i for i in dataset.indices("train") if valid[i]]
        reduction.fit(work.get(i)[0] for i in fit_rows)
    first = work.get(int(np.flatnonzero(valid)[0]))[0]
    shape = (first if reduction.per_video else reduction(first)).shape
    if before_publish is not None:
        before_publish()
    check_space(out, len(ids), shape, storage, work.dir)
    code = lineage.fingerprint(f"extract/{name}")
    provenance = {
        **backend.describe,
        "name": name,
        "modality": modality,
        "decoding": backend.decoding,
        **backend.runtime,
        "reduction": reduction.describe(),
        "fit_split": "train" if reduction.needs_fit else None,
        "per_second": "mean of the frames whose time is in [t, t+1)",
        "failure_policy": on_failure,
        **({"silent_policy": silent_policy} if silent_policy != "keep" else {}),  # keep: the caches of before
        "failed_videos": len(failed),
        "code_sha256": code["sha256"],
        "code_files": code["files"],
        "kernels": kernels.describe(),
        "dataset_order_sha256": dataset.order_sha256,
        "versions_io": {
            "numpy": np.__version__,
            "h5py": h5py.__version__,
            "av": av.__version__,
            "python": platform.python_version(),
        },
    }
    with CacheWriter(out, ids, shape, provenance, storage) as writer:
        for i in range(len(ids)):
            if valid[i]:
                row, facts, _ = work.get(i)
                facts.pop(engine.SILENT, None)
                writer.write(i, row if reduction.per_video else reduction(row), facts)
            else:
                writer.write(i, np.zeros(shape, np.float32))
        writer.set_valid(valid, on_failure)
        writer.save_state("reduction", reduction.state())
    report()  # after the cache: a kill in between leaves the work folder, and the next run redoes both
    work.remove()
    return out


def write_report(
    path: Path,
    modality: str,
    name: str,
    ids: list[str],
    failed: dict[int, str],
    altered: dict[int, tuple[dict, list[str]]],
    policy: str,
    silent: dict[int, dict] | None = None,
    engine_report: dict | None = None,
) -> None:
    """Every failed, altered or silent video and why, beside the cache (JSON, for people and
    scripts). Files are named relative to the videos folder, so a report can be shared.
    ``engine_report``: what the engine adds (the Ray engine: worker deaths and retries, when any)."""
    report = {
        "extractor": name,
        "modality": modality,
        "videos": len(ids),
        "policy": policy,
        "failed": [{"row": i, "video": ids[i], "reason": r} for i, r in sorted(failed.items())],
        "altered": [
            {"row": i, "video": ids[i], "file": facts.get("file"), "what": n}
            for i, (facts, n) in sorted(altered.items())
        ],
        "silent": [
            {"row": i, "video": ids[i], "file": facts.get("file"), "peak": facts[engine.SILENT]}
            for i, facts in sorted((silent or {}).items())
        ],
        **(engine_report or {}),
    }
    atomic_write(path, lambda f: f.write((json.dumps(report, indent=1) + "\n").encode()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modality", choices=["audio", "visual"])
    ap.add_argument(
        "name",
        nargs="?",
        help="a registered extractor (params.yaml extractors.<name> holds its options); "
        "default: the one params.yaml <modality> names",
    )
    ap.add_argument("--dataset", required=True, help="the dataset file (features/dataset.h5)")
    ap.add_argument(
        "--out",
        required=True,
        help="the cache to write (features/<modality>/<name>.h5), or a folder (no .h5 suffix) "
        "that receives <name>.h5 and <name>.report.json",
    )
    a = ap.parse_args(argv)
    out, work_parent = Path(a.out), None
    guard = ParamsGuard()

    def before_publish() -> None:
        if guard.changed():
            raise StageError(guard.message(f"nothing was published (finished videos are kept beside {out})"))

    try:
        cfg = P.load()
        if a.name is None:
            a.name = cfg.get(a.modality)
            if not isinstance(a.name, str):
                raise P.ParamsError(f"params.yaml: {a.modality} must name an extractor, got {a.name!r}")
        if out.suffix != ".h5":  # the DVC stage's output folder: DVC empties it, so work beside it
            out.mkdir(parents=True, exist_ok=True)
            out, work_parent = out / f"{a.name}.h5", out.parent
        stage = P.from_params(ExtractParams, cfg.get("extract"), "extract")
        settings = {
            "device": stage.device,
            "precision": stage.precision,
            "engine": stage.engine,
            "decode_workers": stage.decode_workers,
            "ray": stage.ray,
        }
        options = P.section(cfg, f"extractors.{a.name}")
        dataset = read_dataset(a.dataset)
        cls = extractors.get(a.name)
        if hasattr(cls, "import_cache"):  # released features: nothing to decode, nothing can fail
            check_writable(out.parent)
            with OutputLock(out):
                cls.import_cache(dataset, dataset.videos, out)
                write_report(report_path(out), a.modality, a.name, dataset.video_ids, {}, {}, stage.on_failure)
        else:
            run(
                a.modality,
                a.name,
                options,
                dataset,
                dataset.videos,
                out,
                on_failure=stage.on_failure,
                silent=stage.silent,
                before_publish=before_publish,
                work_parent=work_parent,
                **settings,
            )
    except (extractors.WeightsNotFound, rt.DeviceError, MediaError, StageError, ValueError, DatasetError) as e:
        raise SystemExit(f"extract {a.modality}/{a.name}: {e}") from None
    except OutputBusy as e:
        raise SystemExit(f"extract {a.modality}/{a.name}: {e}") from None
    except OSError as e:
        exit_now(f"extract {a.modality}/{a.name}: {write_failure(e, out)}")
    print(f"wrote {out}")


def write_failure(e: OSError, out: Path) -> str:
    """One line for a failed write: the file, the cause, and what was kept (only if something was)."""
    what = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EFBIG: "a file grew past the size limit",
        errno.EACCES: "permission denied",
        errno.EROFS: "the file system is read-only",
    }
    cause = what.get(e.errno) or (str(e.strerror or e).strip().splitlines() or [type(e).__name__])[0][:160]
    fix = "free space" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "fix permissions"
    kept = [w for w in out.parent.glob(f".{out.stem}.work-*") if any((w / "rows").glob("*.npz"))]
    where = e.filename or out.parent
    return f"cannot write {where} ({cause}). {fix[0].upper() + fix[1:]} and re-run `dvc repro`" + (
        f": finished videos are kept in {kept[0]} and will not be recomputed" if kept else ""
    )


def exit_now(message: str, code: int = 1) -> None:
    """Print one line and exit at once: after a failed HDF5 write (a full disk) the library's
    objects fail again as they are freed and at interpreter exit (dozens of tracebacks, then a
    segfault), and nothing is left to clean (the temporary cache is removed already)."""
    try:
        logging.shutdown()
        sys.stdout.flush()
        print(message, file=sys.stderr, flush=True)
    finally:
        os._exit(code)


if __name__ == "__main__":
    from avcache.cli import configure_logging

    configure_logging()
    die_with_dvc()
    main()
