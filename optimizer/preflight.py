"""Checks that run before a run directory exists, so bad input leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from evaluators.errors import ConfigError
from evaluators.merge.engine import plan_for
from evaluators.pool import Pool
from evaluators.pool.plan import PoolPlan
from evaluators.tasks import TaskLibrary
from optimizer.experiment import Experiment


def check_objectives(experiment: Experiment, source: Path) -> None:
    """Every objective names a task in the tasks directory and a metric that task declares."""
    library = TaskLibrary(experiment.tasks_dir)
    for i, objective in enumerate(experiment.objectives):
        try:
            config = library.config(objective.task)
        except ConfigError as exc:
            raise ConfigError(f"{source}: objectives[{i}]: {exc}") from None
        declared = [m.get("metric") for m in config.get("metric_list", []) if isinstance(m, dict)]
        if declared and objective.metric not in declared:
            raise ConfigError(
                f"{source}: objectives[{i}]: task '{objective.task}' declares metrics {declared}, "
                f"not '{objective.metric}'; pick one of those"
            )


def preflight(experiment: Experiment, pool: Pool, source: Path) -> PoolPlan:
    """Validate the pool's files against the merge method, and the objectives; returns the plan."""
    plan = plan_for(pool, experiment.merge)
    check_objectives(experiment, source)
    return plan
