"""Checks that run before a run directory exists, so bad input leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from evaluators.errors import ConfigError
from evaluators.merge.engine import plan_for
from evaluators.pool import Pool
from evaluators.pool.plan import PoolPlan
from evaluators.tasks import TaskLibrary
from optimizer.experiment import Experiment
from optimizer.space import space_for


def check_objectives(experiment: Experiment, source: Path) -> None:
    """Every objective and report task names a task in the tasks directory and a metric it declares."""
    library = TaskLibrary(experiment.tasks_dir)
    for section, specs in (("objectives", experiment.objectives), ("report", experiment.report)):
        for i, objective in enumerate(specs):
            try:
                config = library.config(objective.task)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {section}[{i}]: {exc}") from None
            declared = [m.get("metric") for m in config.get("metric_list", []) if isinstance(m, dict)]
            if declared and objective.metric not in declared:
                raise ConfigError(
                    f"{source}: {section}[{i}]: task '{objective.task}' declares metrics {declared}, "
                    f"not '{objective.metric}'; pick one of those"
                )


def preflight(experiment: Experiment, pool: Pool, source: Path) -> PoolPlan:
    """Validate the pool's files against the merge method, the space, and the objectives; returns the plan."""
    plan = plan_for(pool, experiment.merge)
    space_for(experiment.space, experiment.merge, plan)  # groups must match tensors
    check_objectives(experiment, source)
    return plan
