"""The datasets lm-eval tasks read: found in the task configs without building a task (building one loads its
data), checked against the local cache that the offline workers read, and fetched into it when asked.

lm-eval's ConfigurableTask calls ``datasets.load_dataset(dataset_path, dataset_name, **dataset_kwargs)``.
Offline, datasets finds a hub dataset only as a prepared copy in ``HF_DATASETS_CACHE``, per config, and local
data files where they lie; ``load_dataset_builder`` makes the same lookups without reading any data, so it is
the check. A task that loads its data in Python (lm-eval's ``class`` tasks, ``custom_dataset``) names no
dataset here and is not checked.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from evaluators.core.errors import ConfigError, MergefrontError, first_line

if TYPE_CHECKING:
    from lm_eval.tasks._index import Entry

Leaf = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class TaskDataset:
    """One dataset a task reads, with the arguments lm-eval hands to ``datasets.load_dataset``."""

    task: str
    path: str
    name: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def of(cls, task: str, config: Mapping[str, Any]) -> TaskDataset | None:
        """The dataset of one task config; None for a task that loads its data in Python."""
        path = config.get("dataset_path")
        if not isinstance(path, str) or config.get("custom_dataset"):
            return None
        kwargs = {k: v for k, v in (config.get("dataset_kwargs") or {}).items() if k != "trust_remote_code"}
        name = config.get("dataset_name")  # lm-eval drops trust_remote_code above: datasets 4 refuses it
        return cls(task, path, name if isinstance(name, str) else None, kwargs)

    def same_data(self, other: TaskDataset) -> bool:
        """Whether both load the same data (the tasks may differ)."""
        return (self.path, self.name, self.kwargs) == (other.path, other.name, other.kwargs)

    def describe(self) -> str:
        """The dataset as a person names it: ``'allenai/ai2_arc' (config 'ARC-Easy')``."""
        return f"'{self.path}'" + (f" (config '{self.name}')" if self.name else "")

    def offline_problem(self) -> str | None:
        """Why datasets cannot load this dataset without the network, in its own words (the first line); None when
        it can. Reads no data: it resolves the data files or finds the prepared copy in the cache."""
        from datasets import load_dataset, load_dataset_builder

        load_only = set(inspect.signature(load_dataset).parameters) - set(
            inspect.signature(load_dataset_builder).parameters
        )
        kwargs = {k: v for k, v in self.kwargs.items() if k not in load_only}
        quiet = logging.getLogger("datasets")  # it warns that it uses the cached copy, as it should offline
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            load_dataset_builder(self.path, self.name, **kwargs)
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            return first_line(exc)
        finally:
            quiet.setLevel(level)
        return None

    def fetch(self) -> str:
        """Download and prepare the dataset into the local cache by the call lm-eval makes; returns its row counts
        per split. Needs the network (``require_network``)."""
        from datasets import load_dataset

        try:
            data = load_dataset(self.path, self.name, **self.kwargs)
        except (OSError, RuntimeError, ValueError) as exc:  # not found on the hub, no network, a bad data file
            raise MergefrontError(
                f"task '{self.task}': dataset {self.describe()} could not be fetched: {first_line(exc)}"
            ) from None
        rows = getattr(data, "num_rows", None)
        return ", ".join(f"{split} {n}" for split, n in rows.items()) if isinstance(rows, dict) else f"{rows} rows"


def require_network() -> None:
    """Refuse to fetch where the environment keeps datasets offline (the user's own setting: ``tasks fetch`` lifts
    mergefront's default), before seconds go to loading the experiment."""
    from datasets import config

    if config.HF_HUB_OFFLINE:
        raise ConfigError(
            "HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set in this shell, so nothing can be downloaded; unset both "
            "for this command"
        )


def builtin_datasets(index: Mapping[str, Entry], name: str) -> list[TaskDataset]:
    """The datasets of lm-eval's task, tag or group ``name``, each once: its tasks' configs merged as lm-eval's
    TaskFactory merges them (a group's own task keys under each member's), read from the index."""
    found: list[TaskDataset] = []
    for task, config in _leaves(index, index[name], {}):
        dataset = TaskDataset.of(task, config)
        if dataset is not None and not any(dataset.same_data(d) for d in found):
            found.append(dataset)
    return found


def _leaves(index: Mapping[str, Entry], entry: Entry, overrides: dict[str, Any]) -> Iterator[Leaf]:
    """The task configs under ``entry``: a task's own, a tag's tasks, a group's members."""
    from lm_eval.tasks._index import Kind

    if entry.kind is Kind.TAG:
        for name in sorted(entry.tags & index.keys()):
            yield from _leaves(index, index[name], overrides)
    elif entry.kind is Kind.GROUP:
        yield from _members(index, entry.name, entry.cfg or {}, overrides)
    else:
        config = {**(entry.cfg or {}), **overrides}
        yield str(config.get("task", entry.name)), config


def _members(index: Mapping[str, Entry], group: str, raw: dict[str, Any], overrides: dict[str, Any]) -> Iterator[Leaf]:
    """A group's members (``TaskFactory._build_group_members``): names or dicts naming a task, tag or group of the
    index, with overrides, or inline tasks and groups."""
    from lm_eval.config.group import GroupConfig
    from lm_eval.tasks._index import Kind

    group_keys = {f.name for f in fields(GroupConfig)}
    merged = {**{k: v for k, v in raw.items() if k not in group_keys}, **overrides}
    items = raw.get("task")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("group"), str):
            inner = {k: v for k, v in item.items() if k != "group"}
            if item["group"] in index:
                yield from _leaves(index, index[item["group"]], {**merged, **inner})
            else:
                yield from _members(index, f"{group}::{item['group']}", item, merged)
            continue
        base, own = (item, merged) if isinstance(item, str) else (item.get("task"), {**merged, **item})
        if not isinstance(base, str):
            continue  # lm-eval refuses such a member when it builds the group
        entry = index.get(base)
        if entry is None:
            yield f"{group}::{base}", {**own, "task": f"{group}::{base}"}
        elif entry.kind is Kind.TAG:
            for name in sorted(entry.tags & index.keys()):
                yield from _leaves(index, index[name], {"task": name, **own})
        else:
            yield from _leaves(index, entry, own if entry.kind is Kind.GROUP else {"task": base, **own})
