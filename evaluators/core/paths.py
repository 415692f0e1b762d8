"""Paths a config file names, kept in the form the file wrote them.

A validated path is absolute (what the code opens), but a run must not store this machine's absolute
paths, nor an export write them: a copied or moved project would read the original's files, or none.
So each validated path is a ``Located``: the absolute path that also remembers how the file spelled it
and, for a relative spelling, the folder it is relative to. Dumped to JSON with a ``relative_to`` folder
in the serialization context (``stored``), a relative spelling is written relative to that folder; an
absolute spelling or a Hugging Face repo id is written as the file wrote it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SerializationInfo

if TYPE_CHECKING:
    _Concrete = Path
else:
    _Concrete = type(Path())  # PosixPath or WindowsPath: Python 3.11 cannot subclass Path itself


class Located(_Concrete):
    """An absolute path that remembers its spelling in the config file (``spelled``) and, when that spelling is
    relative, the folder it is relative to (``base``; None for an absolute path or a repo id)."""

    spelled: str = ""
    base: Path | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (located, (str(self), self.spelled, self.base))  # pickled to Ray workers with its spelling


def located(path: str | Path, spelled: str, base: Path | None) -> Located:
    """``path`` as a ``Located`` that was written ``spelled`` (relative to ``base``, or None)."""
    out = Located(path)
    out.spelled, out.base = spelled, base
    return out


def spelling(path: Path) -> str:
    """How the config file wrote ``path`` (a path made in code: as it is)."""
    return path.spelled if isinstance(path, Located) and path.spelled else str(path)


def folder_of(path: Path) -> Path | None:
    """The folder the config file's relative spelling of ``path`` is relative to (None: spelled absolute, or a repo
    id)."""
    return path.base if isinstance(path, Located) else None


def stored(value: Path, info: SerializationInfo) -> str:
    """A path in a JSON dump: with ``relative_to`` in the context, a relative spelling re-expressed relative to that
    folder, anything else as spelled; without it, the absolute path (as before)."""
    folder, base = (info.context or {}).get("relative_to"), folder_of(value)
    if folder is None:
        return str(value)
    if base is None:
        return spelling(value)
    return os.path.relpath(os.path.normpath(base / spelling(value)), os.path.abspath(folder))
