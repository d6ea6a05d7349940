"""The Ray engine (``avcache.extraction.engine: ray``): actors on a Ray cluster compute rows; this process,
the driver, writes them to the stage's work store, so resume, failure policies, the report and
publication are exactly the local engine's and the cluster needs no shared writable folder.

- One actor per GPU (``extract.device`` cuda or auto with GPUs in the cluster) or per
  ``extract.ray.cpus_per_worker`` CPUs (``extract.ray.workers`` overrides the count); each loads
  the model once and decodes with ``extract.ray.decode_workers`` processes of its own.
- Videos are dispatched one at a time to the actor with the fewest in flight (a few queued per
  actor, so decoding overlaps the model); rows come back through Ray's object store and are
  written in dataset order.
- An actor whose process dies (killed, out of memory, node lost) is restarted by Ray, which
  runs its unfinished videos again (``extract.ray.max_retries``); each row is written once,
  when its result arrives. A video that keeps killing its worker stops the stage, named.
- Actors read the videos at the path the dataset file gives (``dataset.videos``): every node
  must see the videos there, read-only (NFS, a shared volume, or a bucket mounted with a FUSE
  client such as gcsfuse or s3fs). Object-store URLs (s3://, gs://) are not read directly.
  The project's code is shipped to the actors by Ray (``py_modules``); the Python environment
  (requirements.lock plus ray) and the model weights must be installed on every node.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass

from avcache import kernels, runtime
from avcache.contract.params import ParamsError
from avcache.extraction import engine
from avcache.extraction.extractors import WeightsNotFound

log = logging.getLogger(__name__)

RAY_PIN = "ray==2.60.0"
START_TIMEOUT = 900  # seconds for every actor to load its model (weights may be read from a network disk)


class RayMissing(RuntimeError):
    pass


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise RayMissing(
            f"avcache.extraction.engine is 'ray' but Ray is not installed ({e}). Install the `ray` extra: "
            f"`pip install --no-deps -r requirements-extras.lock` (it pins {RAY_PIN}), or "
            "set avcache.extraction.engine: local"
        ) from None
    return ray


@dataclass
class WorkerInfo:
    """What an actor loaded: the cache's provenance comes from it, so the driver loads no model."""

    describe: dict
    decoding: dict
    runtime: dict
    device: str
    pid: int
    kernels: str


@dataclass
class StartFailure:
    """Why an actor could not load its extractor; the driver raises ``error(message)``, the
    stage's own kind of error (``WeightsNotFound``, ``ParamsError`` / ``DeviceError``) or else a
    ValueError, as it would have locally."""

    error: type[Exception]
    message: str

    @classmethod
    def of(cls, e: Exception) -> StartFailure:
        return cls(type(e) if isinstance(e, (WeightsNotFound, ParamsError)) else ValueError, str(e))


class Worker:
    """A Ray actor: the extractor loaded once, videos decoded ahead and embedded one at a time."""

    def __init__(self, name, options, reduction_cfg, device, precision, decode_workers):
        from avcache.extraction import extractors
        from avcache.extraction.reduce import make_reduction

        self.error = None
        try:
            self.extractor = extractors.create(name, options, device, precision)
        except Exception as e:  # reported by info(), so the driver raises it as it would locally
            self.error = StartFailure.of(e)
            return
        self.reduction = make_reduction(reduction_cfg)
        self.decoder = self.extractor.decoder()
        self.pool = engine.decode_pool(decode_workers) if decode_workers else None
        self.lock = threading.Lock()  # one video in the model at a time; the others decode

    def info(self) -> WorkerInfo | StartFailure:
        if self.error:
            return self.error
        return WorkerInfo(
            self.extractor.describe(),
            self.extractor.decoding(),
            self.extractor.runtime(),
            self.extractor.device,
            os.getpid(),
            kernels.describe(),
        )

    def extract(self, task: engine.Task) -> engine.Result:
        if task.missing:
            return engine.Failed(task.missing)
        if self.pool is not None:
            decoded = self.pool.submit(engine.decode, self.decoder, task.path, task.seconds).result()
        else:
            decoded = engine.decode(self.decoder, task.path, task.seconds)
        with self.lock:
            return engine.after_decode(self.extractor, self.reduction, decoded, task.seconds)


def _env_vars() -> dict:
    """The portable kernels pinned in every actor (set before its process imports numpy)."""
    pinned = [*kernels.PORTABLE, *kernels.NEEDS_AVX2, "AVCACHE_KERNELS", "TF_CPP_MIN_LOG_LEVEL"]
    return {k: os.environ[k] for k in pinned if k in os.environ}


def connect(address: str | None = None):
    """``ray.init`` for the stage: this checkout's ``avcache`` package is shipped to every
    worker (``py_modules``), so the actors run exactly the code the cache's lineage hashes."""
    ray = import_ray()
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent  # the avcache package
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level="ERROR",
            runtime_env={"py_modules": [str(root)], "excludes": ["__pycache__"], "env_vars": _env_vars()},
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayMissing(
            f"extract.ray.address {address!r}: cannot start or reach Ray "
            f"({type(e).__name__}: {e}). Start the cluster (`ray start --head` on one "
            "node), then set the address, or null for a local instance"
        ) from None
    return ray


class RayEngine:
    """Starts (or joins) Ray, creates the actors and asks one of them what the cache's provenance
    needs: the driver never loads the model, so it needs no GPU."""

    def __init__(self, name, options, reduction_cfg, device, precision, settings):
        ray = self.ray = import_ray()
        runtime.check(device, precision)
        self.settings, self.started = settings, False
        if not ray.is_initialized():  # else: joined as the caller connected (tests: connect())
            connect(settings.address)
            self.started = True
        try:
            self._start(name, options, reduction_cfg, device, precision)
        except BaseException:
            self.close()
            raise

    def _start(self, name, options, reduction_cfg, device, precision):
        ray, s = self.ray, self.settings
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
        if device.startswith("cuda") and not gpus:
            raise runtime.DeviceError(
                f"extract.device is {device!r} but the Ray cluster has no GPUs "
                f"(resources: {resources}); add GPU nodes or set extract.device: cpu"
            )
        if s.cpus_per_worker > resources.get("CPU", 0):
            raise RayMissing(
                f"extract.ray.cpus_per_worker is {s.cpus_per_worker} but the Ray cluster has "
                f"{resources.get('CPU', 0):g} CPUs in all; lower it or add nodes"
            )
        n = s.workers or (gpus if use_gpu else max(1, int(resources.get("CPU", 1) // s.cpus_per_worker)))
        per_gpu_device = "cuda" if use_gpu else device  # Ray gives each actor its own GPU as cuda:0
        actor = ray.remote(Worker).options(
            num_cpus=s.cpus_per_worker,
            num_gpus=1 if use_gpu else 0,
            max_restarts=-1,
            max_task_retries=s.max_retries,
            max_concurrency=2 + s.decode_workers,
            runtime_env={"env_vars": _env_vars()},
        )
        self.actors = [
            actor.remote(name, options, reduction_cfg, per_gpu_device, precision, s.decode_workers) for _ in range(n)
        ]
        self.ahead = 2 + 2 * s.decode_workers  # videos queued on each actor
        try:
            infos = ray.get([a.info.remote() for a in self.actors], timeout=START_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise RayMissing(
                f"{n} Ray actors ({s.cpus_per_worker:g} CPUs{' and 1 GPU' if use_gpu else ''} "
                f"each) did not all start within {START_TIMEOUT} s; the cluster has {resources}. "
                "Lower extract.ray.workers or cpus_per_worker, or add nodes"
            ) from None
        for info in infos:
            if isinstance(info, StartFailure):
                raise info.error(f"on a Ray worker: {info.message}")
        first = infos[0]
        self.describe, self.decoding, self.runtime = first.describe, first.decoding, first.runtime
        self.device = first.device
        if any(i.runtime != self.runtime or i.describe != self.describe for i in infos):
            raise runtime.DeviceError(
                "the Ray workers load different models or devices: "
                f"{sorted({str(i.runtime) for i in infos})}; use nodes of one kind"
            )
        if first.kernels != kernels.describe():
            log.warning("Ray workers use kernels %s (this process: %s)", first.kernels, kernels.describe())
        self.pids = [i.pid for i in infos]

    def about(self) -> str:
        return f"Ray engine ({len(self.actors)} actors), {self.device}, {self.runtime['precision']}"

    def results(self, tasks):
        """(task, result) in task order, computed on the actors as they become free."""
        ray = self.ray
        queue, pending, done = deque(tasks), {}, {}
        load = {i: 0 for i in range(len(self.actors))}
        order = iter(tasks)
        nxt = next(order, None)
        limit = len(self.actors) * self.ahead * 2  # in flight plus finished out of order
        try:
            while nxt is not None:
                while queue and len(pending) + len(done) < limit:
                    a = min(load, key=load.get)
                    if load[a] >= self.ahead:
                        break
                    task = queue.popleft()
                    pending[self.actors[a].extract.remote(task)] = (task, a)
                    load[a] += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    task, a = pending.pop(ref)
                    load[a] -= 1
                    try:
                        done[task.index] = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        done[task.index] = engine.Error(
                            f"the Ray worker died {self.settings.max_retries + 1} "
                            f"times while extracting this video (it, or a video beside it "
                            f"on that worker, kills the process): {type(e).__name__}: "
                            f"{str(e).splitlines()[0][:300]}"
                        )
                while nxt is not None and nxt.index in done:
                    yield nxt, done.pop(nxt.index)
                    nxt = next(order, None)
        finally:
            for ref in pending:
                ray.cancel(ref, force=False)

    def close(self):
        for a in getattr(self, "actors", []):
            try:
                self.ray.kill(a)
            except Exception:
                pass
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False
