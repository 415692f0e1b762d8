"""The run's Optuna journal file, opened so that a killed driver never blocks or corrupts the next one.

Optuna's default journal lock is a symlink that a SIGKILLed process leaves behind; the next
writer then waits 30 s before it breaks the lock. An ``flock`` is released by the kernel when
its holder dies, so resume starts at once. A write cut short by a kill leaves a line without
its newline; the next append would glue onto it and make the whole journal unreadable, so that
torn tail is cut off before the journal is opened (the trial it belonged to was never told).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from filelock import FileLock
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend


class JournalLock:
    """The two calls Optuna's journal backend makes on its lock (``acquire``, ``release``), on filelock's
    ``flock`` of ``<journal>.flock`` (one per thread, as Optuna's writers may be threads)."""

    def __init__(self, path: Path) -> None:
        self._lock = FileLock(path, thread_local=True)

    def acquire(self) -> bool:
        """Block until this thread holds the ``flock``; always True (Optuna's lock protocol)."""
        self._lock.acquire()
        return True

    def release(self) -> None:
        """Release this thread's ``flock``."""
        self._lock.release()


def trim_torn_tail(path: Path) -> int:
    """Cut bytes after the last newline (a write interrupted by a kill); returns how many were cut."""
    if not path.is_file():
        return 0
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        keep = size
        while keep > 0:
            step = min(4096, keep)
            f.seek(keep - step)
            newline = f.read(step).rfind(b"\n")
            if newline >= 0:
                keep = keep - step + newline + 1
                break
            keep -= step
        if keep < size:
            f.truncate(keep)
            os.fsync(f.fileno())
        return size - keep


def journal_storage(path: Path) -> JournalStorage:
    """Optuna storage on the journal at ``path``, locked with ``flock`` and free of a torn tail."""
    lock = JournalLock(path.with_name(path.name + ".flock"))
    lock.acquire()
    try:
        trim_torn_tail(path)
    finally:
        lock.release()
    # Optuna types lock_obj as its own lock base class, which it does not export; it only calls these two
    return JournalStorage(JournalFileBackend(str(path), lock_obj=cast(Any, lock)))
