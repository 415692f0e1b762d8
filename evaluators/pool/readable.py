"""Can this node read the pool? On a Ray cluster each worker reads the checkpoints on its own node,
so a path that exists on the driver's machine may be missing on another: say which, and where.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from evaluators.core.errors import PoolError
from evaluators.pool.config import Pool

SHARED_STORAGE = (
    "checkpoint paths must be on storage every Ray node sees (a shared filesystem mounted at the same path)"
)


@contextmanager
def readable_here(pool: Pool, reader: str) -> Iterator[None]:
    """Check every path the pool names before the block, and turn a read error on a file inside one of
    them during the block into a ``PoolError`` naming the node."""
    paths = pool_paths(pool)
    for owner, path in paths:
        problem = unreadable(path)
        if problem:
            raise PoolError(_not_on_this_node(reader, path, owner, problem))
    try:
        yield
    except OSError as exc:
        named_by = _owner_of(exc.filename, paths)
        if named_by is None:
            raise
        raise PoolError(_not_on_this_node(reader, Path(exc.filename), named_by, _reason(exc))) from exc


def pool_paths(pool: Pool) -> list[tuple[str, Path]]:
    """Every directory or file the pool names, with the base or member that names it."""
    entries: list[tuple[str, BaseModel]] = [(f"base '{name}'", base) for name, base in pool.bases.items()]
    entries += [(f"member '{m.name}'", m) for m in pool.members]
    return [(owner, value) for owner, entry in entries for _, value in entry if isinstance(value, Path)]


def unreadable(path: Path) -> str | None:
    """Why this process cannot read ``path`` (a directory: list it; a file: open it), or None if it can.
    An empty directory counts as unreadable: a checkpoint directory never is, an unmounted mount point is."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            return None if os.listdir(path) else "is an empty directory"
        with path.open("rb"):
            return None
    except OSError as exc:
        return _reason(exc)


def node_name() -> str:
    """This machine as an error message names it: host name, and the Ray node's IP inside Ray."""
    host = socket.gethostname()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return f"node {host} ({ray.util.get_node_ip_address()})"
    return f"node {host}"


def _reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, PermissionError):
        return "cannot be read (permission denied)"
    return f"cannot be read ({exc.strerror or exc})"


def _owner_of(filename: object, paths: list[tuple[str, Path]]) -> str | None:
    if not isinstance(filename, str | os.PathLike):
        return None
    target = Path(filename)
    return next((owner for owner, path in paths if target == path or target.is_relative_to(path)), None)


def _not_on_this_node(worker_id: str, path: Path, owner: str, problem: str) -> str:
    return f"{worker_id} cannot read the pool on {node_name()}: {path} ({owner}) {problem} there; {SHARED_STORAGE}"
