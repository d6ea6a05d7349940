"""Share caches through a DVC remote, so a lab extracts each configuration once.

    python -m avcache share push     # everything this clone has built, for every configuration
    python -m avcache share pull     # the current configuration's outputs + the run history

``dvc push --run-cache`` uploads the run history but (DVC 3.67) not the outputs of runs that
are not in the current ``dvc.lock``, so a cache a colleague extracted under another
``-S audio=...`` could not be restored elsewhere. ``push`` uploads those outputs too. ``pull``
fetches the current outputs and the run history; a configuration run before anywhere in the lab
is then fetched on demand by ``dvc exp run --pull -S audio=...`` instead of being extracted.
"""

from __future__ import annotations

import argparse
import os


def _run_cache_entries(repo) -> list[tuple[str, str]]:
    entries = []
    for root, _, files in os.walk(repo.stage_cache.cache_dir):
        entries.extend((os.path.basename(root), f) for f in files)
    return entries


def push(remote: str | None = None) -> int:
    from dvc.repo import Repo

    with Repo() as repo:
        count = repo.push(remote=remote, run_cache=True)
        for odb, objs in repo.stage_cache.get_used_objs(_run_cache_entries(repo)).items():
            count += len(repo.cloud.push(objs, remote=remote, odb=odb).transferred)
    return count


def pull(remote: str | None = None) -> int:
    from dvc.repo import Repo

    with Repo() as repo:
        return repo.pull(remote=remote, run_cache=True)["stats"]["fetched"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["push", "pull"])
    ap.add_argument("-r", "--remote", help="a remote name from .dvc/config (default: the default remote)")
    a = ap.parse_args(argv)
    n = (push if a.action == "push" else pull)(a.remote)
    print(f"{a.action}: {n} files transferred")


if __name__ == "__main__":
    main()
