"""``avcache <command>``: one entry point for every stage, the way ``dvc`` itself works.

Each command is a module's ``main(argv)``; the CPU kernels are pinned (``avcache.kernels``)
before that module, and so numpy, torch or TensorFlow, is imported. ``dvc.yaml`` runs these.
``train``, ``evaluate`` and ``attention`` run the task of the dataset file they are given
(``--dataset``): event localization for an AVE dataset, clip classification for a clip dataset
(``avcache.tasks``).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from avcache.process import ParamsGuard, die_with_dvc
from avcache.tasks import TASKS, task_module

# command -> (module, kernels: "portable" for anything that writes a cache, "training" keeps MKL's fast
# branch); a command in TASKS runs the module of its dataset file's task
COMMANDS = {
    "lineage": ("avcache.lineage", None, "write lineage/<stage>.json: the code each stage runs"),
    "demo": ("avcache.datasets.demo", "portable", "generate the embedded AVE demo (`demo clips`: the clip demo)"),
    "dataset": ("avcache.datasets.stage", "portable", "read a dataset into features/dataset.h5"),
    "extract": ("avcache.extraction.stage", "portable", "run one extractor over the dataset into its cache"),
    "plan": ("avcache.extraction.plan", "portable", "estimate an extraction's time, FLOPs and disk"),
    "train": (None, "training", "train the selected model on a pair of caches"),
    "evaluate": (None, "training", "evaluate trained models on the test split or folds"),
    "attention": (None, "training", "draw attention maps on test videos"),
    "report": ("avcache.report", None, "an experiment report from `dvc exp` results"),
    "share": ("avcache.share", None, "push or pull caches to or from the lab's DVC remote"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "usage: avcache <command> [options]   (avcache <command> --help)\n\ncommands:\n" + "\n".join(lines)


def configure_logging() -> None:
    """Warnings and progress notes (``logging``) on stderr; stdout is for results. The project's
    loggers report from INFO up (``__main__`` too: a stage module run with ``python -m``), other
    libraries from WARNING up."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    for name in ("avcache", "__main__"):
        logging.getLogger(name).setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    configure_logging()
    die_with_dvc()  # before the heavy imports: a killed `dvc repro` leaves no stage running
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        sys.exit(f"avcache: unknown command {command!r}\n\n{usage()}")
    module, kernels, _ = COMMANDS[command]
    if kernels:
        from avcache.kernels import pin

        pin(mkl_compatible=kernels == "portable")
    if command in TASKS:
        module = task_module(command, rest)  # after pin(): reading the kind loads h5py and numpy
    sys.argv = [f"avcache {command}", *rest]
    guard = ParamsGuard() if os.environ.get("DVC_STAGE") else None
    importlib.import_module(module).main(rest)
    if guard is not None and guard.changed():  # the stage's own check came too late: DVC must not record it
        sys.exit(f"{command}: " + guard.message("this stage is marked failed"))
