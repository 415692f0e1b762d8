"""Checks that run before a run directory exists, so bad input leaves nothing behind."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from lm_eval.api.registry import DEFAULT_METRIC_REGISTRY

from evaluators.backends.vllm_engine import INSTALL_HINT
from evaluators.core.errors import ConfigError
from evaluators.merge.engine import plan_for
from evaluators.pool import Pool
from evaluators.pool.plan import PoolPlan
from evaluators.scoring.tasks import TaskLibrary
from optimizer.experiment.config import Experiment, Objective
from optimizer.space.weights import space_for


def check_objectives(experiment: Experiment, source: Path) -> None:
    """Every objective and held-out task names a task in the tasks directory (or, with builtin_tasks, one of
    lm-eval's), a metric it declares and a direction that agrees with it, and its datasets load offline: lm-eval
    would find out only in the workers. A missing dataset's message names ``mergefront tasks fetch``."""
    library = experiment.task_library()
    for section, specs in (("objectives", experiment.objectives), ("held_out", experiment.held_out)):
        for i, objective in enumerate(specs):
            where = f"{source}: {section}[{i}]"
            try:
                config = library.config(objective.task)
                if isinstance(config, dict):  # lm-eval checks a built-in task's metrics when it runs
                    check_metric(objective, config, f"task '{objective.task}'")
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            check_direction(objective, library, f"{where} ({objective.label})", searched=section == "objectives")
            try:
                library.check_datasets(objective.task, f"mergefront tasks fetch {source}")
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None


def check_metric(objective: Objective, config: dict[str, Any], where: str) -> None:
    """lm-eval's results for the task must hold the objective's metric under its filter."""
    declared = [m.get("metric") for m in config.get("metric_list") or [] if isinstance(m, dict)]
    if declared and objective.metric not in declared:
        raise ConfigError(f"{where} declares metrics {declared}, not '{objective.metric}'; pick one of those")
    output_type = str(config.get("output_type", "generate_until"))  # lm-eval's default output type
    defaults = list(DEFAULT_METRIC_REGISTRY.get(output_type, []))
    if not config.get("metric_list") and defaults and objective.metric not in defaults:
        raise ConfigError(
            f"{where} has no metric_list, so lm-eval scores it with the default metrics of output_type "
            f"{output_type}, {defaults}, not '{objective.metric}'; pick one of those or add a metric_list to the task"
        )
    filters = [f.get("name") for f in config.get("filter_list") or [] if isinstance(f, dict)] or ["none"]
    if objective.filter not in filters:
        raise ConfigError(
            f"{where} has no filter '{objective.filter}' (its filters: {', '.join(map(str, filters))}), so lm-eval's "
            f"results would hold no '{objective.result_key}'; set 'filter' to one of those"
        )


def check_direction(objective: Objective, library: TaskLibrary, where: str, searched: bool) -> None:
    """A direction must agree with the metric's higher_is_better, by which lm-eval itself ranks it (a maximised
    perplexity searches for the worst models); a searched objective needs one (held-out tasks are only scored)."""
    higher = library.higher_is_better(objective.task, objective.metric)
    if objective.direction is None and higher is None and searched:
        raise ConfigError(
            f"{where}: neither task '{objective.task}' (no higher_is_better in its metric_list) nor lm-eval (no "
            f"default for the metric) says whether a higher '{objective.metric}' is better; set direction: maximize or "
            "minimize"
        )
    expected = None if higher is None else "maximize" if higher else "minimize"
    if objective.direction is not None and expected is not None and objective.direction != expected:
        rank = "higher" if higher else "lower"
        raise ConfigError(
            f"{where}: direction {objective.direction} contradicts task '{objective.task}', where lm-eval ranks a "
            f"{rank} '{objective.metric}' better (higher_is_better: {str(higher).lower()}); set direction: {expected} "
            "or leave it out, or fix higher_is_better in the task's metric_list"
        )


def check_space(experiment: Experiment, pool: Pool, source: Path) -> None:
    """A linear merge is a weighted average: its weights must be able to sum to one."""
    space, k = experiment.space, len(pool.members)
    if experiment.merge.method != "linear" or space.kind != "box":
        return  # simplex weights always sum to one; task-vector methods scale vectors, not models
    low, high = space.bounds
    if not k * low <= 1.0 <= k * high:
        raise ConfigError(
            f"{source}: space: the {k} weights of a linear merge must sum to 1, but each lies in [{low:g}, {high:g}], so "
            f"they sum to between {k * low:g} and {k * high:g}; choose low <= {1 / k:g} <= high, or use kind: simplex"
        )


def has_chat_template(model_dir: Path) -> bool:
    """Whether the tokenizer in ``model_dir`` carries a chat template (in its config or a .jinja file)."""
    if (model_dir / "chat_template.jinja").is_file():
        return True
    config = model_dir / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def check_chat_template(experiment: Experiment, pool: Pool, source: Path) -> None:
    """Refuse (ConfigError naming ``source``) an objective or held-out task that applies a chat template when the
    pool's tokenizer has none."""
    chat = [o.label for o in [*experiment.objectives, *experiment.held_out] if o.apply_chat_template]
    if chat and not has_chat_template(pool.model_dir()):
        raise ConfigError(
            f"{source}: {chat[0]} sets apply_chat_template, but the tokenizer in {pool.model_dir()} has no chat "
            "template; drop the flag or use a pool whose tokenizer has one"
        )


def check_backend(experiment: Experiment, source: Path) -> None:
    """The vLLM backend needs vLLM on the driver's machine too (workers on a cluster are checked when they start)."""
    if experiment.workers.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"{source}: workers.backend is vllm, but vLLM is not installed; {INSTALL_HINT}")


def preflight(experiment: Experiment, pool: Pool, source: Path) -> PoolPlan:
    """Validate the pool's files against the merge method, the space, and the objectives; returns the plan."""
    plan = plan_for(pool, experiment.merge)
    most = experiment.merge.operator.max_members
    if most is not None and len(plan.members) > most:
        raise ConfigError(
            f"{source}: merge: merge method '{experiment.merge.method}' merges at most {most} members, but the "
            f"search would weight all {len(plan.members)} of pool '{pool.name}'; search a pool of {most}"
        )
    try:
        space_for(experiment.space, experiment.merge, plan)  # groups must match tensors
    except ConfigError as exc:
        raise ConfigError(f"{source}: space.groups: {exc}") from None
    check_space(experiment, pool, source)
    check_objectives(experiment, source)
    check_chat_template(experiment, pool, source)
    check_backend(experiment, source)
    return plan
