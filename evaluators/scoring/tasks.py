"""Task specs and the task library: lm-eval task YAMLs from a directory an experiment names, and lm-eval's own.

lm-eval resolves ``dataset_kwargs.data_files`` and a folder given as ``dataset_path`` against the
process's working directory, so the library rewrites them to absolute paths against each YAML's own
folder at load time. YAML tags that execute code (``!function``) are refused: task files come from
other people. The library also answers what lm-eval only finds out when a worker builds a task:
whether a higher value of a metric is better, and whether the task's datasets can be loaded offline.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field

from evaluators.core.config import Frozen, yaml_error
from evaluators.core.errors import ConfigError
from evaluators.core.registry import did_you_mean
from evaluators.scoring.datasets import TaskDataset, builtin_datasets

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager


class TaskSpec(Frozen):
    """What to score: an lm-eval task, the metric (and filter) to read, and how to prompt and run it."""

    task: str
    metric: str = "acc"
    filter: str = "none"
    num_fewshot: int | None = Field(default=None, ge=0, description="default: the task's own")
    limit: int | None = Field(default=None, gt=0, description="score only the first N examples")
    apply_chat_template: bool = Field(default=False, description="wrap prompts in the tokenizer's chat template")
    gen_kwargs: dict[str, str | int | float | bool | list[str]] = Field(
        default_factory=dict, description="generation settings for generate_until tasks (over the task's own)"
    )

    @property
    def result_key(self) -> str:
        """The key of the value in lm-eval's results for the task: ``metric,filter`` (e.g. ``acc,none``)."""
        return f"{self.metric},{self.filter}"

    @property
    def run_key(self) -> tuple[int | None, int | None, bool, str]:
        """Settings lm-eval takes per call, not per task: specs that share them are scored in one call."""
        return (self.limit, self.num_fewshot, self.apply_chat_template, json.dumps(self.gen_kwargs, sort_keys=True))


class _SafeTaskLoader(yaml.SafeLoader):
    """Safe loader that turns code-executing tags into a clear refusal instead of a crash."""


def _refuse_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    raise ConfigError(
        f"{loader.name}: the tag !{suffix} runs code from the task file, which mergefront does not do; "
        "use a task without it"
    )


_SafeTaskLoader.add_multi_constructor("!", _refuse_tag)


def _absolute(value: Any, folder: Path) -> Any:
    if isinstance(value, str):
        return value if "://" in value or Path(value).is_absolute() else str((folder / value).resolve())
    if isinstance(value, list):
        return [_absolute(v, folder) for v in value]
    if isinstance(value, dict):
        return {k: _absolute(v, folder) for k, v in value.items()}
    return value


def _load_task_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A task file with its includes, as lm-eval's ``load_yaml`` reads it (``include`` one file or a list, merged
    in order, the file's own keys winning; a cycle is an error), but parsed by our safe loader: lm-eval's
    loader turns ``!function`` into a path string when asked not to import it, so it could not be refused."""
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path.resolve()))
        raise ConfigError(f"{seen[0]}: its includes form a cycle ({chain}); remove one of these includes")
    seen = (*seen, path.resolve())
    with path.open() as fh:
        loader = _SafeTaskLoader(fh)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        except yaml.YAMLError as exc:
            raise yaml_error(path, exc, "task YAML") from None
        finally:
            loader.dispose()
    if not isinstance(data, dict):
        return {}
    if "include" in data:
        includes = data.pop("include")
        base: dict[str, Any] = {}
        for include in includes if isinstance(includes, list) else [includes]:
            included = path.parent / str(include)
            if not included.is_file():
                raise ConfigError(
                    f"{path}: include '{include}' does not exist (resolved to {included}); fix the path, which is relative to the task file"
                )
            inherited = _load_task_yaml(included, seen)
            inherited.pop("task_list", None)  # as lm-eval: an included file's task list is its own
            base.update(inherited)
        data = {**base, **data}
    files = data.get("dataset_kwargs", {}).get("data_files")
    if files is not None:
        data["dataset_kwargs"] = {**data["dataset_kwargs"], "data_files": _absolute(files, path.parent)}
    dataset = data.get("dataset_path")
    if isinstance(dataset, str) and _local_folder(dataset, path.parent):
        data["dataset_path"] = str((path.parent / dataset).resolve())
    return data


def _local_folder(dataset: str, folder: Path) -> bool:
    """Whether ``dataset`` names a folder next to the task file. datasets tries its packaged builders
    (``json``, ``csv``, ...) before local folders, and a name that is no folder there may be a hub dataset."""
    if Path(dataset).is_absolute() or not (folder / dataset).is_dir():
        return False
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return dataset not in _PACKAGED_DATASETS_MODULES


@cache
def lm_eval_tasks() -> TaskManager:
    """lm-eval's index of its built-in tasks (tasks, groups, tags), built once per process: it takes seconds, and
    the library only reads it."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=True)


class TaskLibrary:
    """Index of the individual tasks defined by YAML files under one directory (none: no tasks of one's own);
    with ``builtin``, names not found there fall back to lm-eval's own tasks (datasets from the local cache)."""

    def __init__(self, directory: Path | None, builtin: bool = False) -> None:
        if directory is not None and not directory.is_dir():
            raise ConfigError(f"tasks directory {directory} does not exist; fix 'tasks_dir' in the experiment")
        self.directory = directory
        self.use_builtin = builtin
        self._configs: dict[str, dict[str, Any]] = {}
        self._files: dict[str, Path] = {}
        for path in sorted(directory.rglob("*.yaml")) if directory else []:
            data = _load_task_yaml(path)
            if isinstance(data.get("task"), str):
                self._configs[data["task"]] = data
                self._files[data["task"]] = path

    def names(self) -> list[str]:
        """The tasks defined under the directory, sorted (lm-eval's built-in ones are not listed)."""
        return sorted(self._configs)

    def is_builtin(self, name: str) -> bool:
        """Whether ``name`` is taken from lm-eval's own tasks (a task, group or tag not defined under the directory)."""
        return self.use_builtin and name not in self._configs and name in lm_eval_tasks().task_index

    def config(self, name: str) -> dict[str, Any] | str:
        """A private copy of the task's lm-eval config, or the name of a built-in task; ready for ``get_task_dict``."""
        if name in self._configs:
            return copy.deepcopy(self._configs[name])
        if self.is_builtin(name):
            return name
        if self.directory is None:
            known = sorted(lm_eval_tasks().task_index) if self.use_builtin else []
            where = "is not one of lm-eval's tasks" if self.use_builtin else "has no task YAML"
            raise ConfigError(
                f"task '{name}' {where}{did_you_mean(name, known)} and no tasks_dir is set; set tasks_dir to the "
                "folder with its task YAML" + ("" if self.use_builtin else ", or builtin_tasks: true for lm-eval's own")
            )
        elsewhere = (
            "nor known to lm-eval" if self.use_builtin else "(set builtin_tasks: true to use lm-eval's own tasks)"
        )
        raise ConfigError(
            f"task '{name}' is not defined under {self.directory}{did_you_mean(name, self.names())} {elsewhere}; "
            f"tasks there: {', '.join(self.names()) or 'none'}"
        )

    def _task_yaml(self, name: str) -> tuple[dict[str, Any], Path | None]:
        """The task's config and the YAML file it comes from (a built-in task's is read without running its code)."""
        config = self.config(name)
        if not isinstance(config, str):
            return config, self._files[name]
        from lm_eval.tasks._yaml_loader import load_yaml

        path = lm_eval_tasks().task_index[config].yaml_path
        return (load_yaml(path, resolve_func=False) if path else {}), path

    def higher_is_better(self, name: str, metric: str) -> bool | None:
        """Whether lm-eval ranks a higher ``metric`` better on task ``name``, decided as lm-eval decides it when it
        builds the task: the flag in the task's metric_list entry, else its registry's default for the metric
        (None where neither says)."""
        from lm_eval.api.registry import is_higher_better

        for entry in self._task_yaml(name)[0].get("metric_list") or []:
            if isinstance(entry, dict) and entry.get("metric") == metric and "higher_is_better" in entry:
                return bool(entry["higher_is_better"])
        return is_higher_better(metric)

    def datasets(self, name: str) -> list[TaskDataset]:
        """The datasets task ``name`` reads, each once (a built-in group's: those of its tasks)."""
        if self.is_builtin(name):
            return builtin_datasets(lm_eval_tasks().task_index, name)
        dataset = TaskDataset.of(name, self._task_yaml(name)[0])
        return [dataset] if dataset else []

    def check_datasets(self, name: str, fetch: str) -> None:
        """Each worker loads the task's data with ``datasets.load_dataset``, offline; ask datasets here whether it
        can, so data it cannot load is refused before any run exists. ``fetch`` is the command that fills the
        cache, named in the message."""
        for dataset in self.datasets(name):
            reason = dataset.offline_problem()
            if reason is not None:
                raise self._dataset_error(name, dataset, reason, fetch)

    def _dataset_error(self, name: str, dataset: TaskDataset, reason: str, fetch: str) -> ConfigError:
        from datasets import config
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

        if self.is_builtin(name):
            part = "" if dataset.task == name else f" (its task '{dataset.task}')"
            return ConfigError(
                f"task '{name}'{part} reads dataset {dataset.describe()}, which is not in the local Hugging Face cache "
                f"{config.HF_DATASETS_CACHE} (datasets: {reason}); runs are offline by default, so fill the cache "
                f"once, on a machine with network: {fetch}"
            )
        path = self._files[name]
        if Path(dataset.path).is_dir():
            return ConfigError(
                f"{path}: dataset_path {dataset.path} is a folder datasets cannot load ({reason}); put the task's data "
                "files (json, jsonl, csv, parquet, ...) in it"
            )
        if dataset.path in _PACKAGED_DATASETS_MODULES:
            return ConfigError(
                f"{path}: datasets cannot load its {dataset.path} data files ({reason}); fix dataset_kwargs.data_files "
                "(paths are relative to the task file)"
            )
        return ConfigError(
            f"{path}: dataset_path '{dataset.path}' is neither a folder next to the task file nor a dataset in the "
            f"local Hugging Face cache ({reason}); fix the path (relative to the task file), or if it names a hub "
            f"dataset, fetch it on a machine with network: {fetch}"
        )
