"""What a run's scores depend on, recorded in ``run.json`` so later runs can tell whether old
scores still hold (warm start) and whether a resumed run still sees the same pool.

- objectives: each objective's spec, plus a hash of its task config and data files;
- evaluation: bootstrap draws, seed, screening; merge: method, knobs, merge base;
- space: kind, bounds, groups and searched knob ranges;
- members: each member's spec plus a hash of its files (names, sizes, first and last MiB).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evaluators.errors import ConfigError
from evaluators.pool import Pool
from evaluators.tasks import TaskLibrary
from optimizer.experiment import Experiment

MIB = 1024 * 1024
HASHED_SUFFIXES = {".safetensors", ".json", ".jsonl", ".yaml", ".model", ".txt"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file_digest(path: Path, h: hashlib._Hash) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as fh:
        h.update(fh.read(MIB))
        if size > 2 * MIB:
            fh.seek(size - MIB)
            h.update(fh.read(MIB))


def files_digest(paths: Iterable[Path]) -> str:
    """Hash of the files (directories: their direct files with model/data suffixes)."""
    h = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in HASHED_SUFFIXES) if path.is_dir() else [path]
        for f in files:
            _file_digest(f, h)
    return h.hexdigest()[:16]


def _task_digest(library: TaskLibrary, task: str) -> str:
    config = library.config(task)
    if isinstance(config, str):  # an lm-eval built-in: its files live in lm-eval's package and cache
        return _digest(config)
    data = config.get("dataset_kwargs", {}).get("data_files") or {}
    files = [Path(p) for p in (data.values() if isinstance(data, dict) else [data]) for p in ([p] if isinstance(p, str) else p)]
    return _digest(json.dumps(config, sort_keys=True, default=str)) + files_digest(f for f in files if f.exists())


def _member_dirs(pool: Pool, member: Any) -> list[Path]:
    dump = member.model_dump()
    dirs = [v for v in dump.values() if isinstance(v, Path)]
    dirs += [pool.bases[v].path for k, v in dump.items() if k in ("base", "target_base") and v in pool.bases]
    return dirs


def fingerprint(experiment: Experiment, pool: Pool) -> dict[str, Any]:
    library = experiment.task_library()
    merge_base = pool.merge_base
    return {
        "objectives": {
            o.label: {"spec": o.model_dump(mode="json"), "task": _task_digest(library, o.task)} for o in experiment.objectives
        },
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
    """Each member's definition and files, hashed: what a resume or warm start needs unchanged."""
    return {
        m.name: _digest(json.dumps(m.model_dump(mode="json", exclude={"name"}), sort_keys=True)) + files_digest(_member_dirs(pool, m))
        for m in pool.members
    }


def check_reusable(old: dict[str, Any], new: dict[str, Any], old_run: Path) -> None:
    """Refuse to reuse ``old_run``'s scores unless everything they depend on is unchanged."""
    def refuse(what: str) -> None:
        raise ConfigError(f"cannot warm-start from {old_run}: {what}; its scores would not be comparable, so start a fresh run")

    for label, spec in new["objectives"].items():
        if label not in old["objectives"]:
            refuse(f"objective '{label}' was not scored there")
        if old["objectives"][label] != spec:
            refuse(f"objective '{label}' changed (task config, data, metric, limit or few-shot)")
    for section in ("evaluation", "seed", "merge", "space"):
        if old[section] != new[section]:
            refuse(f"the {section} settings differ ({old[section]} there, {new[section]} now)")
    for name, digest in old["members"].items():
        if name not in new["members"]:
            refuse(f"member '{name}' is not in the new pool (only added members are supported)")
        if new["members"][name] != digest:
            refuse(f"member '{name}' changed (its definition or files)")
