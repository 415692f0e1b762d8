"""The run directory: created (or replaced only when asked), and its ``run.json``: one place that knows
its name, reads it and writes it.

``run.json`` holds what a run was started with (experiment, pool, study name, storage, content
fingerprints, start time); ``resume``, ``join``, ``export``, ``report``, ``watch`` and a warm start
read it back. It is written whole and replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from evaluators.core.errors import ConfigError
from evaluators.pool import Pool
from optimizer.experiment.config import Experiment
from optimizer.experiment.fingerprint import member_digests

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


def create_run_dir(runs_dir: Path, name: str, overwrite: bool) -> Path:
    """Make ``runs_dir/name``; an existing one is replaced only with ``overwrite``."""
    run_dir = runs_dir / name
    if run_dir.exists():
        if not overwrite:
            raise ConfigError(
                f"run directory {run_dir} already exists; pass --overwrite to replace it, --name to pick another, or `mergefront resume {run_dir}`"
            )
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create run directory {run_dir} ({exc.strerror}); choose a writable --runs-dir"
        ) from None
    return run_dir


def read_run(run_dir: Path, fix: str) -> tuple[Experiment, Pool]:
    """The experiment and pool a run was started with; refused (with ``fix``) if the pool's files changed since."""
    meta = read_meta(run_dir)
    experiment = Experiment.model_validate(meta["experiment"])
    pool = Pool.model_validate(meta["pool"])
    if member_digests(pool) != meta["fingerprint"]["members"]:
        raise ConfigError(f"the pool's files changed since {run_dir} started; {fix}")
    return experiment, pool
