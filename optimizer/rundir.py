"""The run directory's ``run.json``: one place that knows its name, reads it and writes it.

``run.json`` holds what a run was started with (experiment, pool, study name, storage, content
fingerprints, start time); ``resume``, ``join``, ``export``, ``report``, ``watch`` and a warm start
read it back. It is written whole and replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evaluators.errors import ConfigError

RUN_META = "run.json"


def read_meta(run_dir: Path) -> dict[str, Any]:
    """``run_dir``'s ``run.json`` as a dict; ConfigError when ``run_dir`` is not a run directory."""
    path = run_dir / RUN_META
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; is {run_dir} a run directory written by `mergefront search`?")
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def write_meta(run_dir: Path, meta: dict[str, Any]) -> None:
    """Write ``meta`` as ``run_dir``'s ``run.json`` (a temporary file, then an atomic rename)."""
    tmp = run_dir / f".{RUN_META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, run_dir / RUN_META)
