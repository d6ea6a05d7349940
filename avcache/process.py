"""A stage run by DVC stops when DVC is gone.

DVC runs a stage's ``cmd`` as ``$SHELL -c cmd`` and waits for it; after ``kill -9`` of ``dvc
repro`` nothing else stops the stage, which would go on extracting as an orphan, writing
outputs that no ``dvc.lock`` will record, beside the next ``dvc repro``. A stage started by DVC
(``DVC_STAGE`` is set) therefore watches the DVC process (its parent, or its parent's parent
when the shell did not ``exec`` the command) and exits when it is gone; finished work is kept
in the work folders (written atomically), so the next run resumes from it. Run by hand (``nohup
python -m avcache extract ...``) a stage is not tied to its shell.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import signal
import sys
import threading

log = logging.getLogger(__name__)

SHELLS = {"sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "busybox"}
PR_SET_PDEATHSIG = 1


def _parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` (Linux ``/proc``), None when it is gone or unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stop(dvc: int) -> None:
    try:
        print(f"stage stopped: its DVC process (pid {dvc}) is gone; finished work is kept", file=sys.stderr)
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(143)


def die_with_dvc(poll_s: float = 0.5) -> int | None:
    """When run by DVC, exit as soon as the DVC process is gone; returns its pid (None otherwise)."""
    if not os.environ.get("DVC_STAGE") or not sys.platform.startswith("linux"):
        return None
    parent = os.getppid()
    shell = parent if _name(parent) in SHELLS else None
    dvc = _parent_of(shell) if shell else parent
    if dvc is None or dvc <= 1:
        return None
    if shell is None:  # the kernel signals us the moment our parent dies, even mid C call
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def gone() -> bool:
        return os.getppid() != parent or (shell is not None and _parent_of(shell) != dvc)

    if gone():  # it died before we could watch it
        _stop(dvc)

    def watch():
        while not gone():
            threading.Event().wait(poll_s)
        _stop(dvc)

    threading.Thread(target=watch, daemon=True, name="die-with-dvc").start()
    return dvc


class ParamsGuard:
    """``params.yaml`` as a stage read it when it started, to check before it publishes.

    ``dvc exp run`` beside a running ``dvc repro`` rewrites params.yaml in the same workspace
    (and leaves it rewritten when it then fails on DVC's lock): the running stage would publish
    outputs made with the old values, which DVC then records in ``dvc.lock`` with the new ones,
    and the stages after it would run on the new values. A stage that sees params.yaml changed
    publishes nothing and fails, so ``dvc repro`` stops there and records nothing.
    """

    def __init__(self, path: str | os.PathLike = "params.yaml"):
        self.path = path
        self.digest = self._digest()

    def _digest(self) -> str | None:
        try:
            with open(self.path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except FileNotFoundError:
            return None

    def changed(self) -> bool:
        return self._digest() != self.digest

    def message(self, what: str) -> str:
        return (
            f"{self.path} changed while this stage ran (another `dvc exp run`, `dvc exp apply` or an edit); "
            f"{what} so that no output mixes two sets of params: check params.yaml and re-run"
        )
