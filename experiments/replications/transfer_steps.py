"""Recycling then fine-tuning (Lin et al., 2025): does fine-tuning from v2 + v1's diff reach the direct fine-tune's
score in fewer steps than fine-tuning v2 itself with the same recipe?

The transfer pool's build saved both fine-tuning runs every few steps (``toy/pools/transfer/steps.yaml``);
this scores each checkpoint on the fine-tuned skill, on the search and on the held-out split, with the
same worker code as the search, and counts the steps each run needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from evaluators.merge import MergePoint, MergeSpec
from evaluators.pool import load_pool
from evaluators.worker import Worker
from optimizer.experiment.config import load_experiment
from toy.replications.transfer import RUNS

RUN_TITLES = {"direct": "from v2", "transfer": "from v2 + v1's diff"}


@dataclass(frozen=True)
class Curve:
    """One fine-tuning run's score on the fine-tuned skill after each saved step count, on both splits."""

    run: str
    search: dict[int, float]  # steps -> accuracy
    held_out: dict[int, float]


def steps_to_reach(scores: Mapping[int, float], target: float) -> int | None:
    """The fewest saved steps whose score reaches ``target``, or None when no checkpoint does.

    Scores are accuracies on the same 200 examples, so equal counts give equal floats; the 1e-9 only
    guards against a score computed another way."""
    return next((step for step in sorted(scores) if scores[step] >= target - 1e-9), None)


def score_curves(experiment_file: Path, pool_file: Path) -> list[Curve]:
    """Score every checkpoint of the steps pool on the experiment's first objective (the fine-tuned skill) and its
    held-out task; one curve per run."""
    experiment, _ = load_experiment(experiment_file)
    pool = load_pool(pool_file)
    skill, held = experiment.objectives[0], experiment.held_out[0]
    spec = experiment.worker_spec(pool).model_copy(
        update={
            "objectives": {skill.label: skill.task_spec()},
            "held_out": {held.label: held.task_spec()},
            "merge": MergeSpec(method="linear"),
            "bootstrap_iters": 0,
        }
    )
    worker = Worker(spec)
    curves = {run: Curve(run, {}, {}) for run in RUNS}
    for member in pool.names:
        run, step = member.rsplit("_", 1)
        point = MergePoint({m: float(m == member) for m in pool.names})
        curves[run].search[int(step)] = worker.evaluate(point).scores[skill.label].value
        curves[run].held_out[int(step)] = worker.score_held_out(point).scores[held.label].value
    return list(curves.values())


def _reach(scores: Mapping[int, float], target: float) -> str:
    step = steps_to_reach(scores, target)
    return "not reached" if step is None else str(step)


def steps_lines(curves: Sequence[Curve], skill: str) -> list[str]:
    """Markdown: the score of each run after each saved step count, then how many steps each needs to reach the
    direct run's final score (on each split)."""
    by_run = {c.run: c for c in curves}
    direct, transfer = by_run["direct"], by_run["transfer"]
    head = [f"{RUN_TITLES[c.run]}: {skill}{suffix}" for c in curves for suffix in ("", " (report)")]
    lines = ["| steps | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 1)]
    for step in sorted(direct.search):
        cells = [f"{scores[step]:.3f}" for c in curves for scores in (c.search, c.held_out)]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| steps to reach the direct fine-tune's final score | from v2 | from v2 + v1's diff |",
        "|---|---|---|",
    ]
    lines += [f"| {skill}, {split} split: {goal:.3f} | {d} | {t} |" for split, goal, d, t in _reached(direct, transfer)]
    return lines


def steps_verdict(curves: Sequence[Curve]) -> str:
    """One verdict line: the steps each run needs to reach the direct fine-tune's final score, on both splits."""
    by_run = {c.run: c for c in curves}
    parts = [
        f"{goal:.3f} on the {split} split after {t} steps from v2 + v1's diff and {d} from v2"
        for split, goal, d, t in _reached(by_run["direct"], by_run["transfer"])
    ]
    return f"- Fine-tuning reaches the direct fine-tune's final score: {'; '.join(parts)}."


def _reached(direct: Curve, transfer: Curve) -> list[tuple[str, float, str, str]]:
    """Per split: its name, the direct run's final score, and the steps the direct and the transfer run need to
    reach it."""
    last = max(direct.search)
    out = []
    for split, attr in (("search", "search"), ("report", "held_out")):
        goal = getattr(direct, attr)[last]
        out.append((split, goal, _reach(getattr(direct, attr), goal), _reach(getattr(transfer, attr), goal)))
    return out
