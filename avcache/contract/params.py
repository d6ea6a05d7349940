"""params.yaml: loading, validating each section with errors that name the key, and the sections.

Every stage reads its own section; an unknown key, a missing required key or a value of the
wrong type stops the stage with ``params.yaml: <section>.<key>: ...`` before any work. The
sections that are dataclasses are defined here (``from_params`` builds and checks them): ``extract``
(``ExtractParams``, with ``extract.ray``: ``RayParams``), ``train`` (``Recipe``) and
``attention`` (``AttentionParams``); ``dataset`` is ``avcache.datasets.stage.DatasetParams``.
Options that belong to a class or a function (``extractors.<name>``, ``models.<name>``,
``demo``) are checked against its signature (``check_call``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """A param is unknown, missing or of the wrong type; the message names it."""


@dataclasses.dataclass(frozen=True)
class Pattern:
    """``Annotated[str, Pattern(regex, text)]``: a string that ``regex`` matches in full, described
    as ``text`` in errors."""

    regex: str
    text: str


# values that more than one section takes (avcache.runtime resolves them)
Device = typing.Annotated[str, Pattern(r"auto|cpu|cuda(:\d+)?", "auto | cpu | cuda | cuda:N")]
Precision = typing.Literal["fp32", "bf16", "fp16"]
OnFailure = typing.Literal["mask", "exclude", "stop"]  # what a video that cannot be decoded does to the cache
Silent = typing.Literal["keep", "fail"]  # a clip whose audio is digital silence: a valid row, or a failure
Engine = typing.Literal["local", "ray"]


def load(path: str | Path = PARAMS_FILE) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run the stage from the repository root")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ParamsError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    return check_top_level(cfg, path)


# every top-level key params.yaml may hold (the sections above and the selections)
TOP_LEVEL = (
    "audio",
    "visual",
    "model",
    "dataset",
    "demo",
    "clip_demo",
    "extract",
    "extractors",
    "models",
    "train",
    "attention",
)


def check_top_level(cfg, path: str | Path = PARAMS_FILE) -> dict:
    """``cfg`` (params.yaml as loaded) if it is a mapping of known top-level keys only.

    Every stage reads params.yaml through ``load``, so a misspelt section (``modle: dmrn``) stops
    every stage before any work instead of being ignored.
    """
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise ParamsError(f"{path}: must be a mapping of sections, got {type(cfg).__name__} {cfg!r}")
    unknown = sorted(map(str, set(cfg) - set(TOP_LEVEL)))
    if unknown:
        raise ParamsError(f"{path}: unknown top-level key(s) {unknown}; accepted: {', '.join(TOP_LEVEL)}")
    return cfg


def section(cfg: dict, key: str) -> dict:
    """``cfg[key]`` as a dict ({} when absent); ``key`` may be dotted (``extractors.musicnn``)."""
    node = cfg
    for part in key.split("."):
        node = (node or {}).get(part) if isinstance(node, dict) else None
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise ParamsError(f"params.yaml: {key} must be a mapping of options, got {node!r}")
    return node


def check_keys(where: str, given: dict, accepted, required=()) -> dict:
    """``given`` if it has only ``accepted`` keys and every ``required`` one."""
    if not isinstance(given, dict):
        raise ParamsError(f"params.yaml: {where} must be a mapping, got {given!r}")
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ParamsError(f"params.yaml: {where}: unknown key(s) {unknown}; accepted: {sorted(accepted)}")
    missing = [k for k in required if k not in given]
    if missing:
        raise ParamsError(f"params.yaml: {where}: missing key(s) {missing}")
    return given


def _conforms(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if origin is typing.Annotated:
        patterns = [m for m in hint.__metadata__ if isinstance(m, Pattern)]
        return _conforms(value, args[0]) and all(re.fullmatch(m.regex, value) for m in patterns)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, h) for h in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args else typing.Any
        return all(_conforms(v, item) for v in value)
    if origin is typing.Literal:
        return value in args
    return isinstance(value, origin or hint)


def _describe(hint) -> str:
    if typing.get_origin(hint) is typing.Annotated:
        texts = [m.text for m in hint.__metadata__ if isinstance(m, Pattern)]
        return texts[0] if texts else _describe(typing.get_args(hint)[0])
    if typing.get_origin(hint) is typing.Literal:
        return " | ".join(map(repr, typing.get_args(hint)))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Literal | None is a typing.Union ("Union")
        return " | ".join("None" if a is type(None) else _describe(a) for a in typing.get_args(hint))
    if typing.get_args(hint):  # list[int]
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_value(key: str, value, hint, error: type[ParamsError] = ParamsError):
    """``value`` if it is of type ``hint`` (params.yaml ``key``), else ``error`` naming the key."""
    if not _conforms(value, hint):
        raise error(f"params.yaml: {key} must be {_describe(hint)}, got {value!r}")
    return value


def _check_types(where: str, given: dict, hints: dict) -> None:
    for k, v in given.items():
        if k in hints:
            check_value(f"{where}.{k}", v, hints[k])


def _mapping(given, where: str) -> dict:
    """A copy of the section ``given`` ({} when absent), or an error naming ``where`` if it is not a mapping."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ParamsError(f"params.yaml: {where} must be a mapping of options, got {given!r}")
    return dict(given)


def check_call(fn, given: dict | None, where: str, skip=()) -> dict:
    """``given`` checked against the keyword arguments of ``fn`` (names, and types where annotated).

    How extractor and model options are validated: the constructor is the schema.
    """
    given = _mapping(given, where)
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = {
        n: p
        for n, p in inspect.signature(target).parameters.items()
        if n not in ("self", *skip) and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
    check_keys(where, given, params, required)
    _check_types(where, given, typing.get_type_hints(target, include_extras=True))
    return given


def from_params(cls, given: dict | None, where: str):
    """An instance of dataclass ``cls`` from a params section, every key and type checked."""
    given = _mapping(given, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    required = [
        n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    check_keys(where, given, fields, required)
    _check_types(where, given, typing.get_type_hints(cls, include_extras=True))
    obj = cls(**given)
    if hasattr(obj, "check"):
        obj.check(where)
    return obj


# --- the sections ------------------------------------------------------------------------------


@dataclasses.dataclass
class RayParams:
    """params.yaml ``extract.ray``: where the Ray engine runs and how big its actors are."""

    address: str | None = None  # null: a local Ray instance; "auto" or ray://host:10001: a cluster
    cpus_per_worker: float = 2  # CPUs each actor reserves (decoding, and the model on CPU)
    workers: int | None = None  # null: one per GPU (device cuda) or per cpus_per_worker CPUs
    decode_workers: int = 1  # decode processes inside each actor (0: decode in the actor's threads)
    max_retries: int = 3  # times a video is retried on a restarted actor after its worker died

    def check(self, where):
        if (
            self.cpus_per_worker <= 0
            or (self.workers is not None and self.workers < 1)
            or self.decode_workers < 0
            or self.max_retries < 0
        ):
            raise ParamsError(
                f"params.yaml: {where}: cpus_per_worker and workers must be positive, "
                f"decode_workers and max_retries at least 0, got {self.__dict__}"
            )


@dataclasses.dataclass
class ExtractParams:
    """params.yaml ``extract``: options shared by every extraction stage (avcache.extraction.stage)."""

    on_failure: OnFailure = "mask"
    silent: Silent = "keep"
    device: Device = "auto"
    precision: Precision = "fp32"
    engine: Engine = "local"
    decode_workers: int | str = "auto"  # local engine: decoding processes (0: serial; auto: engine.decode_workers)
    ray: RayParams | dict | None = None

    def check(self, where):
        if not (self.decode_workers == "auto" or isinstance(self.decode_workers, int) and self.decode_workers >= 0):
            raise ParamsError(
                f"params.yaml: {where}.decode_workers must be auto, 0 (serial) or a number "
                f"of processes, got {self.decode_workers!r}"
            )
        if not isinstance(self.ray, RayParams):
            self.ray = from_params(RayParams, self.ray, f"{where}.ray")


@dataclasses.dataclass
class Recipe:
    """params.yaml ``train`` (avcache.localization.train); the defaults are the reference recipe for AVE."""

    epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    lr_step: int = 15000  # iterations
    lr_gamma: float = 0.1
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    device: Device = "auto"
    precision: typing.Literal["fp32", "bf16"] = "fp32"  # bf16: autocast for the training steps only
    patience: int | None = None  # epochs without a val improvement before a seed stops; None: never
    loss: typing.Literal["reference", "cross_entropy"] = "reference"

    def check(self, where: str) -> None:
        for k in ("epochs", "batch_size", "lr", "lr_step", "lr_gamma"):
            if getattr(self, k) <= 0:
                raise ParamsError(f"params.yaml: {where}.{k} must be positive, got {getattr(self, k)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"params.yaml: {where}.seeds must be distinct integers, got {self.seeds}")
        if self.patience is not None and self.patience <= 0:
            raise ParamsError(f"params.yaml: {where}.patience must be positive or null (off), got {self.patience}")


@dataclasses.dataclass
class AttentionParams:
    """params.yaml ``attention`` (avcache.localization.attention): which test videos get a map."""

    videos: int = 4  # how many, when ``ids`` is empty
    ids: list[str] = dataclasses.field(default_factory=list)  # these test videos instead
    pick: typing.Literal["both", "confident_correct", "confident_wrong", "first"] = "both"

    def check(self, where: str) -> None:
        if self.videos < 0:
            raise ParamsError(f"params.yaml: {where}.videos must be 0 (no maps) or more, got {self.videos}")
