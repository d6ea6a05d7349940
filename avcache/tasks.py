"""The two tasks and the one place that chooses between them: a dataset file's kind.

An AVE dataset (``kind`` ave) is an event-localization task (``avcache.localization``), a clip
dataset (``kind`` clips) a clip-classification task (``avcache.classification``). The stage
commands ``train``, ``evaluate`` and ``attention`` run the module of the task of the dataset file
named by their ``--dataset``; ``avcache.lineage`` counts both modules as each stage's code.
"""

from __future__ import annotations

import argparse
import sys

# command -> dataset kind (``avcache.contract.dataset``) -> the module whose ``main(argv)`` runs it
TASKS = {
    "train": {"ave": "avcache.localization.train", "clips": "avcache.classification.train"},
    "evaluate": {"ave": "avcache.localization.evaluate", "clips": "avcache.classification.evaluate"},
    "attention": {"ave": "avcache.localization.attention", "clips": "avcache.classification.attention"},
}


def task_module(command: str, argv: list[str]) -> str:
    """The module of ``command``'s task for the dataset file named by ``--dataset`` in ``argv``."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--dataset")
    dataset = ap.parse_known_args(argv)[0].dataset
    if dataset is None:  # --help, or the option is missing: the AVE task's parser answers
        return TASKS[command]["ave"]
    from avcache.contract.dataset import DatasetError, read_kind

    try:
        return TASKS[command][read_kind(dataset)]
    except DatasetError as e:
        sys.exit(f"{command}: {e}")
