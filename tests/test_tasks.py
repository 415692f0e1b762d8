"""The task library: data paths made absolute, code-running tags refused, includes merged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluators.errors import ConfigError
from evaluators.tasks import TaskLibrary


def test_data_files_become_absolute(tiny_pool: Path) -> None:
    config = TaskLibrary(tiny_pool / "tasks").config("toy_add")
    path = Path(config["dataset_kwargs"]["data_files"]["search"])
    assert path.is_absolute() and path == (tiny_pool / "tasks" / "data" / "add_search.jsonl").resolve()


def test_the_task_loads_from_any_working_directory(tiny_pool: Path, tmp_path: Path) -> None:
    from lm_eval.tasks import TaskManager, get_task_dict

    config = TaskLibrary(tiny_pool / "tasks").config("toy_sort_report")
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        task = get_task_dict([config], TaskManager(include_defaults=False))["toy_sort_report"]
    finally:
        os.chdir(old)
    assert len(task.eval_docs) == 24


def test_function_tags_are_refused(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("task: t\nprocess_docs: !function utils.process\n")
    with pytest.raises(ConfigError, match="runs code from the task file"):
        TaskLibrary(tmp_path)


def test_include_merges_the_base_file(tmp_path: Path) -> None:
    (tmp_path / "_base.yaml").write_text("output_type: loglikelihood\ndataset_path: json\n")
    (tmp_path / "t.yaml").write_text("include: _base.yaml\ntask: t\ndataset_path: csv\n")
    config = TaskLibrary(tmp_path).config("t")
    assert config["output_type"] == "loglikelihood" and config["dataset_path"] == "csv"
    with pytest.raises(ConfigError, match="did you mean 't'"):
        TaskLibrary(tmp_path).config("tt")
