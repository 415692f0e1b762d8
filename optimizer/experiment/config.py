"""Schema of an experiment file (``experiments/*.yaml``), validated once at the edge.

An objective is a task spec (what lm-eval scores) plus a direction and a name; a bare
string is shorthand for ``{task: NAME}`` (metric ``acc``). The direction defaults to the one
lm-eval ranks the task's metric by (its ``higher_is_better``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import Field, ModelWrapValidatorHandler, ValidationInfo, field_validator, model_validator

from evaluators.backends import BACKENDS, BackendSpec
from evaluators.core.config import ExistingDir, ExistingFile, Frozen, from_a_person, load_config, registered
from evaluators.core.errors import ConfigError
from evaluators.merge import MergeSpec, declared_parameters
from evaluators.pool import Pool, load_pool
from evaluators.scoring.tasks import TaskLibrary, TaskSpec
from evaluators.worker import WorkerSpec
from optimizer.sampler import SAMPLERS
from optimizer.space.weights import SpaceSpec

Direction = Literal["maximize", "minimize"]
RUN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
log = logging.getLogger(__name__)


class Objective(TaskSpec):
    """One objective: a task spec plus the direction to optimise it in and its column name; written as a bare task
    name for the defaults."""

    direction: Direction | None = Field(default=None, description="default: as the task's higher_is_better says")
    name: str | None = Field(default=None, description="column name; default '<task>/<metric>'")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"task": data} if isinstance(data, str) else data

    @property
    def label(self) -> str:
        """The objective's column name in trial tables and plots: ``name``, else ``<task>/<metric>``."""
        return self.name or f"{self.task}/{self.metric}"

    def task_spec(self) -> TaskSpec:
        """The objective as a plain ``TaskSpec``, what the workers score (direction and name left out)."""
        return TaskSpec(**self.model_dump(include=set(TaskSpec.model_fields)))


class SamplerSpec(Frozen):
    """Default multivariate TPE: best hypervolume per evaluation in ``bench/search.py`` (see README)."""

    name: str = "tpe"

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return registered(SAMPLERS, name)


class BudgetSpec(Frozen):
    """When to stop proposing trials: whichever limit is reached first (running trials finish)."""

    trials: int = Field(default=40, ge=1, description="trials evaluated in total, baselines included")
    wall_minutes: float | None = Field(default=None, gt=0, description="wall time of one search or resume call")
    worker_hours: float | None = Field(default=None, gt=0, description="summed trial time of all workers, over the run")


class WorkersSpec(BackendSpec):
    """The backend each worker runs, plus how many workers."""

    count: int = Field(default=1, ge=1)


class EvaluationSpec(Frozen):
    """How each trial is scored: bootstrap draws for the stderr, and screening (``screen`` examples per task first;
    promotion unless the front beats the screen by ``margin``)."""

    bootstrap_iters: int = Field(default=100, ge=0, description="lm-eval bootstrap draws for stderr (0: none)")
    screen: int | None = Field(
        default=None, ge=1, description="screen sampler proposals on this many seeded examples per task first"
    )
    margin: float = Field(
        default=0.02, ge=0, description="promote a screened trial unless the front beats it by this much everywhere"
    )


class Experiment(Frozen):
    """One experiment file, validated: the pool, what to score, what to merge and search, and the budget. Its dump is
    ``run.json``'s ``experiment``, which reloads without the task files."""

    name: Annotated[str, Field(pattern=RUN_NAME)]
    pool: ExistingFile = Field(default=Path("../checkpoints.yaml"), validate_default=True)  # relative to this file
    tasks_dir: ExistingDir | None = Field(default=None, description="folder of your own task YAMLs")
    builtin_tasks: bool = Field(
        default=False, description="also accept lm-eval's own task names (datasets from the local cache)"
    )
    objectives: list[Objective] = Field(min_length=1)
    held_out: list[Objective] = Field(default=[], description="held-out tasks, scored for front trials only")
    merge: MergeSpec = MergeSpec()
    space: SpaceSpec = SpaceSpec()
    sampler: SamplerSpec = SamplerSpec()
    budget: BudgetSpec = BudgetSpec()
    workers: WorkersSpec = WorkersSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _former_held_out(cls, data: Any, info: ValidationInfo) -> Any:
        """``held_out`` was called ``report``: still accepted, with one deprecation line for a person's file (a
        stored run's ``run.json`` written under the old name loads silently)."""
        if not isinstance(data, dict) or "report" not in data:
            return data
        if "held_out" in data:
            raise ValueError("give the held-out tasks once, under 'held_out' ('report' is its former name)")
        if from_a_person(info):
            log.warning("experiment: 'report' is now called 'held_out'; 'report' still works but will go")
        return {("held_out" if k == "report" else k): v for k, v in data.items()}

    @model_validator(mode="wrap")
    @classmethod
    def _default_directions(cls, data: Any, handler: ModelWrapValidatorHandler[Experiment]) -> Experiment:
        """An objective without a direction takes its task's ``higher_is_better``, so a perplexity is minimised
        without saying so. Resolved here, once, because run.json stores the result: a stored run (every direction
        explicit) reloads without its task files. What cannot be resolved stays None, for preflight to refuse."""
        experiment = handler(data)
        if all(o.direction is not None for o in [*experiment.objectives, *experiment.held_out]):
            return experiment
        try:
            library = experiment.task_library()
        except ConfigError:
            return experiment  # preflight names the broken task file

        def resolved(objectives: list[Objective]) -> list[Objective]:
            return [
                o if o.direction else o.model_copy(update={"direction": _task_direction(library, o)})
                for o in objectives
            ]

        return experiment.model_copy(
            update={"objectives": resolved(experiment.objectives), "held_out": resolved(experiment.held_out)}
        )

    @model_validator(mode="after")
    def _unique_labels(self) -> Experiment:
        labels = [o.label for o in [*self.objectives, *self.held_out]]
        dup = next((label for label in labels if labels.count(label) > 1), None)
        if dup is not None:
            raise ValueError(f"objective or held-out task '{dup}' appears twice; give one of them a distinct 'name'")
        return self

    @model_validator(mode="after")
    def _searched_knobs_fit_the_method(self) -> Experiment:
        op = self.merge.operator
        for key, (low, high) in self.space.knobs.items():
            param = op.parameter(key)
            if param is None:
                allowed = ", ".join(sorted(p.name for p in op.parameters)) or "none"
                name = next((p.name for p in declared_parameters().values() if p.key == key), key)
                raise ValueError(
                    f"space.knobs: '{name}' is not a parameter of merge method '{self.merge.method}' (its parameters: {allowed})"
                )
            if key in self.merge.parameters:
                raise ValueError(f"space.knobs: '{param.name}' is searched, so do not also fix it under merge")
            for value in (low, high):
                try:
                    param.check(value)
                except ValueError as exc:
                    raise ValueError(f"space.knobs: {exc}") from None
        return self

    @field_validator("workers")
    @classmethod
    def _known_backend(cls, workers: WorkersSpec) -> WorkersSpec:
        registered(BACKENDS, workers.backend)
        return workers

    @property
    def directions(self) -> list[Direction]:
        """Every objective's, resolved at load (``_default_directions``); preflight refuses one left unresolved."""
        return [cast(Direction, o.direction) for o in self.objectives]

    @property
    def labels(self) -> list[str]:
        """The objectives' labels, in objective order (the order of every score vector)."""
        return [o.label for o in self.objectives]

    def task_library(self) -> TaskLibrary:
        """The task index of ``tasks_dir`` (ConfigError when it is missing; none set: lm-eval's tasks only, with
        builtin_tasks); reads the YAML files each call."""
        return TaskLibrary(self.tasks_dir, self.builtin_tasks)

    def worker_spec(self, pool: Pool) -> WorkerSpec:
        """What each worker is sent: the pool with this experiment's objectives, held-out tasks, merge and runtime
        settings."""
        return WorkerSpec(
            pool=pool,
            objectives={o.label: o.task_spec() for o in self.objectives},
            tasks_dir=self.tasks_dir,
            builtin_tasks=self.builtin_tasks,
            runtime=BackendSpec(**self.workers.model_dump(exclude={"count"})),
            merge=self.merge,
            groups=self.space.groups,
            held_out={o.label: o.task_spec() for o in self.held_out},
            screen=self.evaluation.screen,
            bootstrap_iters=self.evaluation.bootstrap_iters,
            seed=self.seed,
        )


def _task_direction(library: TaskLibrary, objective: Objective) -> Direction | None:
    """The direction lm-eval ranks the objective's metric by; None for an unknown task or an unranked metric."""
    try:
        higher = library.higher_is_better(objective.task, objective.metric)
    except ConfigError:
        return None
    return None if higher is None else "maximize" if higher else "minimize"


def load_experiment(path: Path, allow_pickle: bool = False, allow_download: bool = False) -> tuple[Experiment, Pool]:
    """Validate the experiment file and the pool file it names (``load_pool``'s options)."""
    experiment = load_config(Experiment, path)
    return experiment, load_pool(experiment.pool, allow_pickle, allow_download)
