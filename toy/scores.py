"""The toy pool's score table: each member scored alone by the same worker the search uses."""

from __future__ import annotations

import json
from pathlib import Path

from evaluators.merge import MergePoint
from evaluators.pool import load_pool
from evaluators.scoring.tasks import TaskSpec
from evaluators.worker import Worker, WorkerSpec
from toy.build import MANIFEST, TOY_SKILLS, task_name


def member_scores(pool_file: Path, tasks_dir: Path) -> dict[str, dict[str, float]]:
    """Search-split accuracy of every member on every skill: {member: {skill: acc}}."""
    pool = load_pool(pool_file)
    objectives = {skill: TaskSpec(task=task_name(skill, "search")) for skill in TOY_SKILLS}
    worker = Worker(WorkerSpec(pool=pool, objectives=objectives, tasks_dir=tasks_dir, bootstrap_iters=0))
    out = {}
    for member in pool.names:
        result = worker.evaluate(MergePoint({member: 1.0}))
        out[member] = {skill: score.value for skill, score in result.scores.items()}
    return out


def trade_offs(scores: dict[str, dict[str, float]]) -> tuple[bool, bool]:
    """(every member is best at some skill, no member is best at every skill); ties count as best."""
    skills = next(iter(scores.values())).keys()
    best = {s: max(row[s] for row in scores.values()) for s in skills}
    wins = {m: {s for s in skills if row[s] == best[s]} for m, row in scores.items()}
    return all(wins.values()), not any(len(w) == len(best) for w in wins.values())


def cached_scores(pool_dir: Path, tasks_dir: Path) -> dict[str, dict[str, float]]:
    """Member scores stored in the build's manifest, computed once after each build."""
    manifest_path = pool_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    if "scores" not in manifest:
        manifest["scores"] = member_scores(pool_dir / "checkpoints.yaml", tasks_dir)
        manifest_path.write_text(json.dumps(manifest, indent=2))
    return manifest["scores"]


def score_table(pool_dir: Path, tasks_dir: Path) -> str:
    """The score table of the toy pool and whether it shows genuine trade-offs."""
    scores = cached_scores(pool_dir, tasks_dir)
    skills = list(next(iter(scores.values())))
    lines = ["member    " + "".join(f"{s:>9}" for s in skills)]
    lines += [f"{m:<10}" + "".join(f"{row[s]:>9.3f}" for s in skills) for m, row in scores.items()]
    each, none_all = trade_offs(scores)
    lines.append(
        f"every member best at something: {'yes' if each else 'NO'}; none best at everything: {'yes' if none_all else 'NO'}"
    )
    return "\n".join(lines)
