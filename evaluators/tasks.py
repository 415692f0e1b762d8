"""Task specs and the task library: lm-eval task YAMLs from a directory an experiment names.

lm-eval resolves ``dataset_kwargs.data_files`` against the process's working directory, so
the library rewrites them to absolute paths against each YAML's own folder at load time.
YAML tags that execute code (``!function``) are refused: task files come from other people.
"""

from __future__ import annotations

import copy
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from evaluators.config import Frozen, yaml_error
from evaluators.errors import ConfigError
from evaluators.registry import did_you_mean


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


def _load_task_yaml(path: Path) -> dict[str, Any]:
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
        include = str(data.pop("include"))
        included = path.parent / include
        if not included.is_file():
            raise ConfigError(
                f"{path}: include '{include}' does not exist (resolved to {included}); fix the path, which is relative to the task file"
            )
        base = _load_task_yaml(included)
        data = {**base, **data}
    files = data.get("dataset_kwargs", {}).get("data_files")
    if files is not None:
        data["dataset_kwargs"] = {**data["dataset_kwargs"], "data_files": _absolute(files, path.parent)}
    return data


class TaskLibrary:
    """Index of the individual tasks defined by YAML files under one directory; with ``builtin``,
    names not found there fall back to lm-eval's own tasks (their datasets must be in the local cache)."""

    def __init__(self, directory: Path, builtin: bool = False) -> None:
        if not directory.is_dir():
            raise ConfigError(f"tasks directory {directory} does not exist; fix 'tasks_dir' in the experiment")
        self.directory = directory
        self.use_builtin = builtin
        self._configs: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.rglob("*.yaml")):
            data = _load_task_yaml(path)
            if isinstance(data.get("task"), str):
                self._configs[data["task"]] = data

    def names(self) -> list[str]:
        return sorted(self._configs)

    @cached_property
    def builtin(self) -> frozenset[str]:
        """lm-eval's built-in task names (indexing them takes seconds, so only when asked)."""
        from lm_eval.tasks import TaskManager

        return frozenset(TaskManager(include_defaults=True).all_tasks)

    def config(self, name: str) -> dict[str, Any] | str:
        """A private copy of the task's lm-eval config, or the name of a built-in task; ready for ``get_task_dict``."""
        if name in self._configs:
            return copy.deepcopy(self._configs[name])
        if self.use_builtin and name in self.builtin:
            return name
        elsewhere = "nor known to lm-eval" if self.use_builtin else "(set builtin_tasks: true to use lm-eval's own tasks)"
        raise ConfigError(
            f"task '{name}' is not defined under {self.directory}{did_you_mean(name, self.names())} {elsewhere}; "
            f"tasks there: {', '.join(self.names()) or 'none'}"
        )
