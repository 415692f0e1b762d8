"""The run directory: created (or replaced only when asked), named, and its ``run.json``: one place that knows
its name, its keys, reads it and writes it.

``run.json`` holds what a run was started with (experiment, pool, study name, storage, content
fingerprints, start time); ``resume``, ``join``, ``export``, ``report``, ``watch`` and a warm start
read it back as a ``RunMeta``, and no other module spells its keys. It is written whole and replaced
atomically, so a reader never sees half of it. A key an older run lacks (``storage``) takes its default
here.

It holds no path of this machine, so a copied or moved project's runs work where they are: the
experiment's paths (pool file, task folder) are relative to the run directory, the pool's model paths
as the pool file wrote them (relative to its folder, or absolute, or a repo id); older runs' absolute
paths still load. When a path is gone, the error names the option that points the run at its new
place (``Places``: ``--pool``, ``--tasks-dir``); ``read_run`` then checks the files found there are the
ones the run used, by their content fingerprints.

A run directory is named after its experiment; ``watch``'s later generations of it are ``NAME-2``,
``NAME-3``, ... (``generation_name``, ``generations``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluators.core.config import validate
from evaluators.core.errors import ConfigError
from evaluators.pool import Pool, load_pool
from optimizer.experiment.config import Experiment
from optimizer.experiment.fingerprint import fingerprint as fingerprint_of
from optimizer.experiment.fingerprint import member_digests, objective_digests, pool_change
from optimizer.store.study import JOURNAL

RUN_META = "run.json"
MOVED_POOL = "if the pool moved, pass --pool PATH (its pool file's new place)"
MOVED = {
    "pool": "if the pool file moved, pass --pool PATH (its new place)",
    "tasks_dir": "if the task folder moved, pass --tasks-dir PATH (its new place)",
}


@dataclass(frozen=True)
class Places:
    """What the command line says about a run's files: where they are now if they moved since it started
    (``--pool``, ``--tasks-dir``), and whether a repo-id member may be downloaded (``--allow-download``)."""

    pool: Path | None = None
    tasks_dir: Path | None = None
    allow_download: bool = False

    def given(self) -> dict[str, Path]:
        """The new places given, by the experiment key they replace (``resume`` then rewrites ``run.json``)."""
        return {k: v for k, v in (("pool", self.pool), ("tasks_dir", self.tasks_dir)) if v is not None}


def _stored_experiment(experiment: Experiment, run_dir: Path) -> dict[str, Any]:
    """The experiment as ``run.json`` stores it: its paths relative to the run directory."""
    return experiment.model_dump(mode="json", context={"relative_to": run_dir})


def _stored_pool(pool: Pool, experiment: Experiment) -> dict[str, Any]:
    """The pool as ``run.json`` stores it: its paths as the pool file wrote them (relative to its folder)."""
    return pool.model_dump(mode="json", context={"relative_to": experiment.pool.parent})


@dataclass(frozen=True)
class RunMeta:
    """``run.json``, typed. The experiment and pool are kept as stored (their JSON dumps): ``experiment()`` and
    ``pool()`` validate them, which needs the experiment's pool file and task directory to exist; the accessors
    below read what a report shows without that."""

    experiment_dump: dict[str, Any]
    pool_dump: dict[str, Any]
    study_name: str
    fingerprint: dict[str, Any]
    started_at: str = ""
    storage: str = JOURNAL  # where the study lives (``open_storage``); absent before shared storage: the journal

    @classmethod
    def start(cls, experiment: Experiment, pool: Pool, run_dir: Path, storage: str = JOURNAL) -> RunMeta:
        """What a new run in ``run_dir`` records, started now (hashes the task and member files: see
        ``fingerprint``)."""
        return cls(
            experiment_dump=_stored_experiment(experiment, run_dir),
            pool_dump=_stored_pool(pool, experiment),
            study_name=experiment.name,
            fingerprint=fingerprint_of(experiment, pool),
            started_at=datetime.now(UTC).isoformat(),
            storage=storage,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunMeta:
        """Read ``run.json``'s dict; absent optional keys take their defaults."""
        return cls(
            experiment_dump=data["experiment"],
            pool_dump=data["pool"],
            study_name=data["study_name"],
            fingerprint=data["fingerprint"],
            started_at=data.get("started_at", ""),
            storage=data.get("storage", JOURNAL),
        )

    def to_json(self) -> dict[str, Any]:
        """``run.json``'s dict, keys in their stored order."""
        return {
            "experiment": self.experiment_dump,
            "pool": self.pool_dump,
            "study_name": self.study_name,
            "storage": self.storage,
            "fingerprint": self.fingerprint,
            "started_at": self.started_at,
        }

    def with_experiment(self, experiment: Experiment, run_dir: Path) -> RunMeta:
        """The same run with a changed experiment (``resume --trials``); the fingerprint is kept."""
        return replace(self, experiment_dump=_stored_experiment(experiment, run_dir))

    def relocated(self, experiment: Experiment, pool: Pool, run_dir: Path) -> RunMeta:
        """The same run with its files at a new place (``resume --pool``, ``--tasks-dir``): same content, so the
        fingerprint is kept."""
        return replace(
            self, experiment_dump=_stored_experiment(experiment, run_dir), pool_dump=_stored_pool(pool, experiment)
        )

    def experiment(self, run_dir: Path, places: Places | None = None) -> Experiment:
        """The experiment the run was started with, validated; its files where ``places`` says they moved."""
        given = (places or Places()).given()
        moved = {k: os.path.relpath(os.path.abspath(v), os.path.abspath(run_dir)) for k, v in given.items()}
        source = f"{run_dir / RUN_META}"
        context = {"person": False, "fix": MOVED}
        return validate(Experiment, {**self.experiment_dump, **moved}, source, Path(os.path.abspath(run_dir)), context)

    def pool(self, run_dir: Path, experiment: Experiment, places: Places | None = None) -> Pool:
        """The pool the run was started with, validated against the folder of ``experiment``'s pool file; with
        ``places.pool``, read from that file instead."""
        places = places or Places()
        if places.pool is not None:
            return load_pool(places.pool, bool(self.pool_dump.get("allow_pickle")), places.allow_download)
        fix = dict.fromkeys(("path", "source_finetune", "source_base"), MOVED_POOL)
        context = {"person": False, "fix": fix, "allow_download": places.allow_download}
        return validate(Pool, self.pool_dump, f"{run_dir / RUN_META}: pool", experiment.pool.parent, context)

    @property
    def member_fingerprints(self) -> dict[str, str]:
        """Each member's content fingerprint when the run started (``member_digests``'s form)."""
        members: dict[str, str] = self.fingerprint["members"]
        return members

    @property
    def name(self) -> str:
        """The experiment's name."""
        return str(self.experiment_dump["name"])

    @property
    def member_names(self) -> list[str]:
        """The pool's members, in pool order."""
        return [str(m["name"]) for m in self.pool_dump["members"]]

    @property
    def merge_method(self) -> str:
        """The merge method's name."""
        return str(self.experiment_dump["merge"]["method"])

    @property
    def space_kind(self) -> str:
        """The kind of weight space searched."""
        return str(self.experiment_dump["space"]["kind"])

    @property
    def sampler_name(self) -> str:
        """The sampler's name."""
        return str(self.experiment_dump["sampler"]["name"])


def read_meta(run_dir: Path) -> RunMeta:
    """``run_dir``'s ``run.json``; ConfigError when ``run_dir`` is not a run directory."""
    path = run_dir / RUN_META
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; is {run_dir} a run directory written by `mergefront search`?")
    try:
        data = json.loads(path.read_text())
        return RunMeta.from_json(data)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        problem = f"is not valid JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else f"lacks {exc}"
        raise ConfigError(
            f"{path} {problem}; it is written by mergefront, not by hand: restore it from a copy of the run"
        ) from None


def write_meta(run_dir: Path, meta: RunMeta) -> None:
    """Write ``meta`` as ``run_dir``'s ``run.json`` (a temporary file, then an atomic rename)."""
    tmp = run_dir / f".{RUN_META}.tmp"
    tmp.write_text(json.dumps(meta.to_json(), indent=2))
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


def read_run(run_dir: Path, fix: str, places: Places | None = None) -> tuple[Experiment, Pool]:
    """The experiment and pool a run was started with (its files where ``places`` says they moved); refused (with
    ``fix``) if the pool's files changed since, or the tasks at a new ``--tasks-dir`` are not the run's."""
    meta = read_meta(run_dir)
    experiment = meta.experiment(run_dir, places)
    pool = meta.pool(run_dir, experiment, places)
    digests = member_digests(pool)
    if digests != meta.member_fingerprints:
        change = pool_change(meta.member_fingerprints, digests).describe()
        raise ConfigError(f"the pool's files changed since {run_dir} started ({change}); {fix}")
    if places is not None and places.tasks_dir is not None:
        stored = meta.fingerprint["objectives"]
        for label, now in objective_digests(experiment).items():
            if stored.get(label) != now:
                raise ConfigError(
                    f"--tasks-dir {places.tasks_dir}: task '{now['spec']['task']}' of objective '{label}' there is "
                    f"not the one {run_dir} was scored on; point --tasks-dir at a copy of the run's task folder"
                )
    return experiment, pool


def generation_name(name: str, generation: int) -> str:
    """The run directory of an experiment's ``generation``: ``NAME`` (1), ``NAME-2``, ``NAME-3``, ..."""
    return name if generation == 1 else f"{name}-{generation}"


def generations(runs_dir: Path, name: str) -> list[tuple[int, Path]]:
    """The experiment's runs with their generation, oldest first (see ``generation_name``)."""
    pattern = re.compile(rf"^{re.escape(name)}(?:-(\d+))?$")
    found = []
    for path in runs_dir.glob(f"{name}*") if runs_dir.is_dir() else []:
        match = pattern.match(path.name)
        if match and (path / RUN_META).is_file():
            found.append((int(match.group(1) or 1), path))
    return sorted(found)
