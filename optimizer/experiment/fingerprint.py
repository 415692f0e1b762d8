"""What a run's scores depend on, recorded in ``run.json`` so later runs can tell whether old
scores still hold (warm start) and whether a resumed run still sees the same pool.

- objectives: each objective's spec, plus a hash of its task's content: the config, with each local
  data path replaced by a hash of the data's bytes (a copy of the task folder elsewhere is the same task);
- evaluation: bootstrap draws, seed, screening; merge: method, knobs, merge base;
- space: kind, bounds and groups; searched parameter ranges are left out (each trial stores the
  values it used, so a changed range leaves old scores valid);
- members: each member's content fingerprint: its settings (kind, scale, trust) plus, for every
  file of its directories, the name, size, full safetensors header and a hash of 16 evenly spaced
  64 KiB samples. Paths and base names are left out, so a moved or renamed directory is the same
  member, while any rewritten tensor changes the sizes, the header or (almost surely) a sample.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluators.core.errors import ConfigError
from evaluators.pool import Pool
from evaluators.scoring.tasks import TaskLibrary
from optimizer.experiment.config import Experiment

SAMPLES, SAMPLE_BYTES = 16, 64 * 1024
HASHED_SUFFIXES = {".safetensors", ".json", ".jsonl", ".yaml", ".model", ".txt"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file_digest(path: Path, h: hashlib._Hash) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as fh:
        if path.suffix == ".safetensors" and size >= 8:
            header = int.from_bytes(fh.read(8), "little")
            h.update(fh.read(min(header, size - 8)))
        if size <= SAMPLES * SAMPLE_BYTES:
            fh.seek(0)
            h.update(fh.read())
            return
        for i in range(SAMPLES):
            fh.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1))
            h.update(fh.read(SAMPLE_BYTES))


def files_digest(paths: Iterable[Path]) -> str:
    """Hash of the files (directories: their direct files with model/data suffixes)."""
    h = hashlib.sha256()
    for path in paths:
        files = (
            sorted(p for p in path.iterdir() if p.is_file() and p.suffix in HASHED_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        for f in files:
            _file_digest(f, h)
    return h.hexdigest()[:16]


def _data_digest(value: Any) -> Any:
    """A task config's local data paths (files, glob patterns, folders) replaced by the hash of what they hold."""
    if isinstance(value, list):
        return [_data_digest(v) for v in value]
    if isinstance(value, dict):
        return {k: _data_digest(v) for k, v in value.items()}
    if not isinstance(value, str) or "://" in value or not Path(value).is_absolute():
        return value  # the task library made every local path absolute; anything else is a name or a URL
    return _tree_digest(Path(p) for p in sorted(glob.glob(value)))


def _tree_digest(paths: Iterable[Path]) -> str:
    """Hash of task data: every file under the folders (any suffix, subfolders included: a ``dataset_path`` folder of
    CSV or Parquet files is data too), with its path below the folder, or the files themselves."""
    h = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
            _file_digest(f, h)
    return h.hexdigest()[:16]


def _task_digest(library: TaskLibrary, task: str) -> str:
    config = library.config(task)
    if isinstance(config, str):  # an lm-eval built-in: its files live in lm-eval's package and cache
        return _digest(config)
    data = config.get("dataset_kwargs", {})
    content = {
        **config,
        "dataset_path": _data_digest(config.get("dataset_path")),
        "dataset_kwargs": {**data, "data_files": _data_digest(data.get("data_files"))},
    }
    return _digest(json.dumps(content, sort_keys=True, default=str))


def objective_digests(experiment: Experiment) -> dict[str, Any]:
    """Each objective's spec and task content hash, as ``run.json``'s fingerprint holds them."""
    library = experiment.task_library()
    return {
        o.label: {"spec": o.model_dump(mode="json"), "task": _task_digest(library, o.task)}
        for o in experiment.objectives
    }


def _member_dirs(pool: Pool, member: Any) -> list[Path]:
    dump = member.model_dump()
    dirs = [v for v in dump.values() if isinstance(v, Path)]
    dirs += [pool.bases[v].path for k, v in dump.items() if k in ("base", "target_base") and v in pool.bases]
    return dirs


def fingerprint(experiment: Experiment, pool: Pool) -> dict[str, Any]:
    """What this run's scores depend on (see the module docstring), as stored in ``run.json``; hashes the task files
    and the members' files, so it reads a little of every weight file."""
    merge_base = pool.merge_base
    return {
        "objectives": objective_digests(experiment),
        "evaluation": experiment.evaluation.model_dump(mode="json"),
        "seed": experiment.seed,
        "merge": {
            **experiment.merge.model_dump(mode="json"),
            "merge_base": files_digest([pool.bases[merge_base].path]) if merge_base else None,
        },
        "space": experiment.space.model_dump(mode="json", exclude={"knobs"}),
        "members": member_digests(pool),
    }


def member_digests(pool: Pool) -> dict[str, str]:
    """Each member's content fingerprint (see the module docstring): what a resume or warm start needs unchanged."""

    def settings(member: Any) -> str:
        dump = member.model_dump(mode="json", exclude={"name", "base", "target_base"})
        return json.dumps({k: v for k, v in dump.items() if not isinstance(getattr(member, k), Path)}, sort_keys=True)

    return {m.name: _digest(settings(m)) + files_digest(_member_dirs(pool, m)) for m in pool.members}


@dataclass(frozen=True)
class PoolChange:
    """How a pool differs from the one an earlier run used, member by member (by content fingerprint)."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # old name -> new name, same content

    @property
    def stale(self) -> set[str]:
        """Old members whose scores cannot be reused: their files changed, or they left the pool."""
        return {*self.changed, *self.removed}

    @property
    def needs_search(self) -> bool:
        """Whether new or changed members call for a new search (``mergefront watch``); a removal or rename alone
        does not."""
        return bool(self.added or self.changed)

    def describe(self) -> str:
        """One line for the log: the added, changed, removed and renamed members, or 'no change'."""
        parts = [
            f"{what}: {', '.join(names)}"
            for what, names in (("added", self.added), ("changed", self.changed), ("removed", self.removed))
            if names
        ]
        parts += [f"renamed: {old} -> {new}" for old, new in self.renamed.items()]
        return "; ".join(parts) or "no change"


def pool_change(old: dict[str, str], new: dict[str, str]) -> PoolChange:
    """Compare two ``member_digests``: a member gone under one name whose content is back under a
    new name is a rename; the same name with other content is a change."""
    gone = [n for n in old if n not in new]
    fresh = [n for n in new if n not in old]
    renamed: dict[str, str] = {}
    for name in gone:
        match = next((n for n in fresh if new[n] == old[name] and n not in renamed.values()), None)
        if match is not None:
            renamed[name] = match
    return PoolChange(
        added=[n for n in fresh if n not in renamed.values()],
        changed=[n for n in old if n in new and new[n] != old[n]],
        removed=[n for n in gone if n not in renamed],
        renamed=renamed,
    )


def _set(section: Any) -> Any:
    """A section without its unset (null) entries: runs before merge parameters were declared per method
    recorded every method's parameters, unset ones as null; the values that were set must agree."""
    return {k: v for k, v in section.items() if v is not None} if isinstance(section, dict) else section


def check_reusable(old: dict[str, Any], new: dict[str, Any], old_run: Path) -> PoolChange:
    """Refuse to reuse ``old_run``'s scores unless the tasks and settings they depend on are unchanged;
    returns how the pool changed (scores involving changed or removed members are not reused)."""

    def refuse(what: str) -> None:
        raise ConfigError(
            f"cannot warm-start from {old_run}: {what}; its scores would not be comparable, so start a fresh run"
        )

    for label, spec in new["objectives"].items():
        if label not in old["objectives"]:
            refuse(f"objective '{label}' was not scored there")
        if len(old["objectives"][label]["task"]) > len(spec["task"]):
            refuse(f"objective '{label}' was fingerprinted by an older mergefront, from its task files' paths")
        if old["objectives"][label] != spec:
            refuse(f"objective '{label}' changed (task config, data, metric, limit or few-shot)")
    for section in ("evaluation", "seed", "merge", "space"):
        if _set(old[section]) != _set(new[section]):
            refuse(f"the {section} settings differ ({old[section]} there, {new[section]} now)")
    return pool_change(old["members"], new["members"])
