"""Share caches through a DVC remote, so a lab extracts each configuration once.

    python -m avcache share push     # everything this clone has built, for every configuration
    python -m avcache share pull     # the current configuration's outputs + the run history

``dvc push --run-cache`` uploads the run history but (DVC 3.67) not the outputs of runs that
are not in the current ``dvc.lock``, so a cache a colleague extracted under another
``-S audio=...`` could not be restored elsewhere. ``push`` uploads those outputs too. ``pull``
fetches the current outputs and the run history; a configuration run before anywhere in the lab
is then fetched on demand by ``dvc exp run --pull -S audio=...`` instead of being extracted.

A pull that cannot restore an output (its object is missing from the remote, or fails the hash
check ``make remote`` turns on with ``verify = true``) and any other DVC error is one line naming
what failed and what to do, and a non-zero exit; DVC's warnings are then folded into that line.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from contextlib import contextmanager

from avcache.contract.io import counted


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


class _Held(logging.Filter):
    """Holds back DVC's warnings (and errors) instead of printing them, remembering which
    handler each was meant for."""

    def __init__(self):
        super().__init__()
        self.records: dict[int, logging.LogRecord] = {}
        self.routes: list[tuple[logging.Handler, logging.LogRecord]] = []

    def holding(self, handler: logging.Handler) -> logging.Filter:
        held = self

        class _For(logging.Filter):
            def filter(self, record):
                if record.levelno < logging.WARNING:
                    return True
                held.records[id(record)] = record
                held.routes.append((handler, record))
                return False

        return _For()


@contextmanager
def _held_warnings():
    """DVC's warnings during the block (from ``dvc`` and ``dvc_data``, whichever handler would
    print them: DVC's own, or the root one ``avcache.cli`` configures): printed after the block
    as DVC would on success, or returned for the one-line message on failure."""
    held = _Held()
    handlers = list(dict.fromkeys([*logging.getLogger("dvc").handlers, *logging.getLogger().handlers]))
    filters = [(h, held.holding(h)) for h in handlers]
    for h, f in filters:
        h.addFilter(f)
    ok = False
    try:
        yield held
        ok = True
    finally:
        for h, f in filters:
            h.removeFilter(f)
        if ok:
            for h, record in held.routes:
                h.handle(record)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def failure(action: str, e: Exception, warnings: list[str]) -> str:
    """One line: what could not be pushed or pulled, why, and what to do."""
    from dvc.config import NoRemoteError
    from dvc.exceptions import CheckoutError

    missing = sorted({h for w in warnings for h in re.findall(r"\b(?:md5|md5-dos2unix): ([0-9a-f]{32})", w)})
    if isinstance(e, CheckoutError):
        targets = [str(t) for t in e.target_infos]
        shown = ", ".join(targets[:5]) + (f" and {len(targets) - 5} more" if len(targets) > 5 else "")
        objects = f" ({counted(len(missing), 'object')}: {', '.join(m[:12] for m in missing[:3])})" if missing else ""
        return (
            f"{action}: {shown} could not be restored: {'its' if len(targets) == 1 else 'their'} data is missing "
            f"from the remote or failed its hash check{objects}; whoever built {'it' if len(targets) == 1 else 'them'} "
            "should run `make push` again, or rebuild here with `dvc repro`"
        )
    if isinstance(e, NoRemoteError):
        return f"{action}: no DVC remote is set; run `make remote REMOTE=/path/to/lab/avcache-remote` (docs/sharing.md)"
    return f"{action}: {_one_line(e)}" + (f" ({counted(len(missing), 'object')} missing)" if missing else "")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["push", "pull"])
    ap.add_argument("-r", "--remote", help="a remote name from .dvc/config (default: the default remote)")
    a = ap.parse_args(argv)
    from dvc.exceptions import DvcException

    try:
        with _held_warnings() as held:
            n = (push if a.action == "push" else pull)(a.remote)
    except DvcException as e:
        print(failure(a.action, e, [r.getMessage() for r in held.records.values()]), file=sys.stderr)
        raise SystemExit(1) from None
    print(f"{a.action}: {counted(n, 'file')} transferred")


if __name__ == "__main__":
    main()
