"""The Ray engine (``avcache.extraction.engine: ray``): actors on a Ray cluster compute rows; this process,
the driver, writes them to the stage's work store, so resume, failure policies, the report and
publication are exactly the local engine's and the cluster needs no shared writable folder.

- One actor per GPU (``extract.device`` cuda or auto with GPUs in the cluster) or per
  ``extract.ray.cpus_per_worker`` CPUs (``extract.ray.workers`` overrides the count); each loads
  the model once and decodes with ``extract.ray.decode_workers`` processes of its own.
- Videos are dispatched one at a time to the actor with the fewest in flight (a few queued per
  actor, so decoding overlaps the model); rows come back through Ray's object store and are
  written in dataset order.
- Retries are the driver's, not Ray's: an actor whose process dies (killed, out of memory) is
  restarted by Ray and gets no video until it answers again; its unfinished videos go to the
  other actors. A death counts against a video (``extract.ray.max_retries``) only while the
  actor's node is alive: an actor whose node is lost is retired and the surviving nodes carry
  on. A video that keeps killing its worker stops the stage, named. Each row is written once,
  when its result arrives; deaths and retries are recorded in the extraction report.
- Video paths are made absolute on the driver, so an actor's working directory (where
  ``ray start`` ran) does not matter. Every node must see the videos at that path, read-only
  (NFS, a shared volume, or a bucket mounted with a FUSE client such as gcsfuse or s3fs); a
  file the driver found but a node does not have is that node's fault, not the video's: the
  video is retried on another node, and when no node can read it the stage stops naming the
  nodes (never a masked row). Object-store URLs (s3://, gs://) are not read directly.
  The project's code is shipped to the actors by Ray (``py_modules``); the Python environment
  (requirements.lock plus ray) and the model weights must be installed on every node.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from avcache import kernels, runtime
from avcache.contract.params import ParamsError
from avcache.extraction import engine
from avcache.extraction.extractors import WeightsNotFound

log = logging.getLogger(__name__)

RAY_PIN = "ray==2.60.0"
START_TIMEOUT = 900  # seconds for every actor to load its model (weights may be read from a network disk)
PROBE_TIMEOUT = 5  # seconds for a TCP connection to extract.ray.address before Ray is asked to join it
BLIND_AFTER = 3  # videos a node did not have before it is sent no more
NODE_GRACE = 60  # seconds Ray may take to declare a lost node dead before a video is blamed for its deaths
UNSEEN_ENV = "AVCACHE_TEST_UNSEEN"  # tests: folders (os.pathsep-separated) this node's actors cannot see


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
    node: str = ""


@dataclass
class Unseen:
    """A video file the driver found that this actor's node does not have: the node's fault,
    so the video is retried on another node instead of being failed."""

    node: str
    reason: str


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
            node_name(),
        )

    def where(self) -> tuple[str, int]:
        """(node, pid): the driver's probe of an actor restarted after its process died."""
        return node_name(), os.getpid()

    def extract(self, task: engine.Task) -> engine.Result | Unseen:
        if task.missing:
            return engine.Failed(task.missing)
        if not visible(task.path):
            return Unseen(node_name(), "no such file on this node")  # the driver names the path
        if self.pool is not None:
            decoded = self.pool.submit(engine.decode, self.decoder, task.path, task.seconds).result()
        else:
            decoded = engine.decode(self.decoder, task.path, task.seconds)
        with self.lock:
            return engine.after_decode(self.extractor, self.reduction, decoded, task.seconds)


def node_name() -> str:
    """This node as people see it: its IP and the start of its Ray node id (two nodes may share an IP)."""
    import ray

    ctx = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}"


def visible(path) -> bool:
    """Whether this node has the file; a test can hide folders from one node (``UNSEEN_ENV``)."""
    hidden = [h for h in os.environ.get(UNSEEN_ENV, "").split(os.pathsep) if h]
    if any(Path(path).is_relative_to(h) for h in hidden):
        return False
    return Path(path).is_file()


def check_reachable(address: str | None) -> None:
    """Fail in seconds, in one line, when nothing listens at a ``host:port`` or ``ray://host:port``
    address (Ray itself retries for minutes)."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        raise RayMissing(
            f"extract.ray.address {address!r}: nothing answers at {host}:{port} "
            f"({e.strerror or e or 'timed out'}, {PROBE_TIMEOUT} s). Start the cluster "
            "(`ray start --head` on the head node) or fix the address; null starts a local instance"
        ) from None


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
    check_reachable(address)
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
            "node), then set the address, or null for a local instance; a cluster with token "
            "authentication (Ray 2.60's `ray start --head` turns it on unless RAY_AUTH_MODE=disabled) "
            "needs the same RAY_AUTH_MODE and token in the stage's environment"
        ) from None
    return ray


@dataclass
class Actor:
    """The driver's view of one actor: where it runs, what it holds, and whether it may get work
    (``ready``; ``restarting`` after its process died, until it answers a probe; ``gone``)."""

    handle: object
    node: str
    pid: int
    load: int = 0
    state: str = "ready"
    event: dict = field(default_factory=dict)  # its last death, as recorded in the report


def stage_error(message: str) -> Exception:
    from avcache.extraction.stage import StageError  # imported late: the stage imports this module

    return StageError(message)


class RayEngine:
    """Starts (or joins) Ray, creates the actors and asks one of them what the cache's provenance
    needs: the driver never loads the model, so it needs no GPU."""

    def __init__(self, name, options, reduction_cfg, device, precision, settings):
        ray = self.ray = import_ray()
        runtime.check(device, precision)
        self.settings, self.started = settings, False
        self.workers: list[Actor] = []
        self.deaths: list[dict] = []  # for the report: every actor process that died
        self.retries: list[dict] = []  # for the report: every video sent again, where from and why
        if not ray.is_initialized():  # else: joined as the caller connected (tests: connect())
            connect(settings.address)
            self.started = True
        try:
            self._start(name, options, reduction_cfg, device, precision)
        except BaseException:
            self.close()
            raise

    def _slots(self, use_gpu: bool) -> int:
        """How many actors the cluster's live nodes hold, each node on its own: an actor's CPUs
        (and GPU) must all be on one node. Fails in seconds, naming the setting and the largest node."""
        s = self.settings
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        per_node = [int(r.get("CPU", 0) // s.cpus_per_worker) for r in nodes]
        if use_gpu:
            per_node = [min(k, int(r.get("GPU", 0))) for k, r in zip(per_node, nodes)]
        slots = sum(per_node)
        if not slots:
            largest = max(nodes, key=lambda r: (r.get("GPU", 0) if use_gpu else 0, r.get("CPU", 0)), default={})
            gpu = f" and {largest.get('GPU', 0):g} GPUs" if use_gpu else ""
            raise RayMissing(
                f"extract.ray.cpus_per_worker is {s.cpus_per_worker:g}{' with 1 GPU' if use_gpu else ''} but the "
                f"largest of the {len(nodes)} Ray nodes has {largest.get('CPU', 0):g} CPUs{gpu}: no actor can be "
                "placed. Lower extract.ray.cpus_per_worker or add a bigger node"
            )
        if s.workers and s.workers > slots:
            raise RayMissing(
                f"extract.ray.workers is {s.workers} but the {len(nodes)} Ray nodes hold {slots} actors of "
                f"{s.cpus_per_worker:g} CPUs{' and 1 GPU' if use_gpu else ''} (per node: {per_node}). "
                "Lower extract.ray.workers or cpus_per_worker, or set workers: null"
            )
        return slots

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
        n = s.workers or self._slots(use_gpu)
        if s.workers:
            self._slots(use_gpu)
        per_gpu_device = "cuda" if use_gpu else device  # Ray gives each actor its own GPU as cuda:0
        actor = ray.remote(Worker).options(
            num_cpus=s.cpus_per_worker,
            num_gpus=1 if use_gpu else 0,
            max_restarts=-1,
            max_task_retries=0,  # the driver retries (results): a lost node must not use a video's retries
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
        self.workers = [Actor(a, i.node, i.pid) for a, i in zip(self.actors, infos)]

    def about(self) -> str:
        nodes = len({a.node for a in self.workers})
        return f"Ray engine ({len(self.actors)} actors on {nodes} nodes), {self.device}, {self.runtime['precision']}"

    def report(self) -> dict:
        """What the extraction report records beyond the local engine's: nothing when no actor died."""
        return {k: v for k, v in (("workers", self.deaths), ("retries", self.retries)) if v}

    def _live_nodes(self) -> set[str]:
        alive = {n["NodeID"][:8] for n in self.ray.nodes() if n.get("Alive")}
        return {a.node for a in self.workers if a.node.rpartition("/")[2] in alive}

    def _died(self, actor: Actor, why: str, probes: dict) -> None:
        """An actor's process died: no more work for it until it answers from its new process."""
        if actor.state != "ready":
            return
        actor.state = "restarting"
        actor.event = {"node": actor.node, "pid": actor.pid, "died": why}
        self.deaths.append(actor.event)
        log.warning("Ray worker %s on node %s died (%s)", actor.pid, actor.node, why)
        probes[actor.handle.where.remote()] = actor

    def _retire_lost(self, probes: dict) -> None:
        """Actors waiting to restart on a node Ray declared dead are retired (no resurrection)."""
        restarting = [a for a in self.workers if a.state == "restarting"]
        if not restarting:
            return
        live = self._live_nodes()
        for a in restarting:
            if a.node not in live:
                a.state = "gone"
                a.event["then"] = "retired: its node is lost"
                log.warning("Ray node %s is lost; carrying on with the other nodes", a.node)
                for ref in [r for r, b in probes.items() if b is a]:
                    del probes[ref]
                try:
                    self.ray.kill(a.handle, no_restart=True)
                except Exception:
                    pass

    def _blamed(self, nodes: list[str]) -> int:
        """Deaths of a video's workers on nodes that are still alive; a node just lost may take
        Ray ``NODE_GRACE`` s to be declared dead, so a video is blamed only after that."""
        deadline = time.monotonic() + NODE_GRACE
        while True:
            live = self._live_nodes()
            blamed = sum(n in live for n in nodes)
            if blamed <= self.settings.max_retries or time.monotonic() > deadline:
                return blamed
            time.sleep(0.5)

    def results(self, tasks):
        """(task, result) in task order, computed on the actors as they become free."""
        ray, s = self.ray, self.settings
        tasks = [replace(t, path=Path(os.path.abspath(t.path))) if t.path else t for t in tasks]
        fresh, again = deque(tasks), deque()  # never sent; sent again (after a death or an unseen file)
        pending, probes, done = {}, {}, {}
        deaths: dict[int, list[str]] = {}  # task index: nodes its worker died on
        unseen: dict[int, set[str]] = {}  # task index: nodes without its file
        blind: dict[str, int] = {}  # node: videos it did not have (at BLIND_AFTER it gets no more)
        lost_path = None
        order = iter(tasks)
        nxt = next(order, None)
        limit = len(self.workers) * self.ahead * 2  # in flight plus finished out of order

        def pick(task):
            free = [
                a
                for a in self.workers
                if a.state == "ready"
                and a.load < self.ahead
                and a.node not in unseen.get(task.index, ())
                and blind.get(a.node, 0) < BLIND_AFTER
            ]
            return min(free, key=lambda a: a.load) if free else None

        def send(task, a):
            pending[a.handle.extract.remote(task)] = (task, a)
            a.load += 1

        def nowhere(task) -> bool:
            """No live actor's node has the file: the stage stops naming the nodes."""
            live = {a.node for a in self.workers if a.state != "gone"}
            if not live or not live <= unseen.get(task.index, set()):
                return False
            done[task.index] = engine.Error(
                f"the file is on the driver but no Ray node can read it (nodes {', '.join(sorted(unseen[task.index]))}"
                f"): mount {Path(task.path).parent} at that path on every node, or run on the nodes that have it"
            )
            return True

        try:
            while True:
                while nxt is not None and nxt.index in done:
                    yield nxt, done.pop(nxt.index)
                    nxt = next(order, None)
                if nxt is None:
                    return
                while True:  # dispatch: videos sent again first (never held back by the limit), then new ones
                    for task in list(again):
                        if nowhere(task):
                            again.remove(task)
                        elif a := pick(task):
                            again.remove(task)
                            send(task, a)
                    if fresh and len(pending) + len(done) < limit and (a := pick(fresh[0])):
                        send(fresh.popleft(), a)
                        continue
                    break
                seeing = [a for a in self.workers if a.state != "gone" and blind.get(a.node, 0) < BLIND_AFTER]
                if not seeing and any(a.state != "gone" for a in self.workers):
                    raise stage_error(
                        f"the Ray nodes left ({', '.join(sorted(blind))}) do not have the videos "
                        f"({lost_path}: no such file there): mount them at that path on every node; "
                        "finished videos are kept, re-run to resume"
                    )
                if not seeing:
                    raise stage_error(
                        f"every Ray worker is gone ({self.deaths}); finished videos are kept: "
                        "restart the cluster's nodes and re-run to resume"
                    )
                waiting = [*pending, *probes]
                ready = ray.wait(waiting, num_returns=1, timeout=1.0)[0] if waiting else time.sleep(0.5)
                if not ready:
                    self._retire_lost(probes)
                    continue
                ref = ready[0]
                if ref in probes:
                    a = probes.pop(ref)
                    try:
                        a.node, a.pid = ray.get(ref)
                        a.state = "ready"
                        a.event["then"] = f"restarted as pid {a.pid} on node {a.node}"
                    except ray.exceptions.RayError:
                        self._retire_lost(probes)
                        if a.state == "restarting":
                            time.sleep(0.2)
                            probes[a.handle.where.remote()] = a
                    continue
                task, a = pending.pop(ref)
                a.load -= 1
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:  # the actor's process died with this video on it
                    why = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                    self._died(a, why, probes)
                    deaths.setdefault(task.index, []).append(a.node)
                    self.retries.append({"video": task.video, "node": a.node, "reason": f"worker died ({why})"})
                    if self._blamed(deaths[task.index]) > s.max_retries:
                        done[task.index] = engine.Error(
                            f"the Ray worker died {len(deaths[task.index])} times while extracting this video "
                            f"(on nodes {', '.join(sorted(set(deaths[task.index])))}; it, or a video beside it on "
                            f"that worker, kills the process): {why}"
                        )
                    else:
                        again.append(task)
                    continue
                if isinstance(result, Unseen):
                    unseen.setdefault(task.index, set()).add(result.node)
                    self.retries.append({"video": task.video, "node": result.node, "reason": result.reason})
                    log.warning("Ray node %s: %s; sending video %s elsewhere", result.node, result.reason, task.video)
                    blind[result.node], lost_path = blind.get(result.node, 0) + 1, task.path
                    if blind[result.node] == BLIND_AFTER:
                        log.warning("Ray node %s does not have the videos: sending it no more", result.node)
                        self.deaths.append(
                            {"node": result.node, "pid": a.pid, "blind": f"{BLIND_AFTER} videos not on this node"}
                        )
                    if not nowhere(task):
                        again.append(task)
                    continue
                done[task.index] = result
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
