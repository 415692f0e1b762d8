"""The datasets of a task, checked before a run in the local cache the offline workers read: lm-eval's built-in
tasks, tags and groups resolved to their datasets as lm-eval's own factory resolves them, a cache the test builds
read as lm-eval reads it, and ``mergefront tasks fetch``, which fills that cache."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from evaluators.core.environment import apply_process_env
from evaluators.core.errors import ConfigError
from evaluators.scoring.datasets import TaskDataset
from evaluators.scoring.tasks import TaskLibrary, lm_eval_tasks
from optimizer.cli import main
from tests.helpers import ARC_ROW, ARC_ROWS, ARC_SPLITS, cache_hub_dataset

ARC = "allenai/ai2_arc"
FETCH = "mergefront tasks fetch exp.yaml"


def test_a_cached_dataset_passes_the_check_and_lm_eval_reads_it_offline(hf_cache: Path) -> None:
    """The positive path, faithful to the end: with only the prepared copy the test wrote, offline, the check passes
    and lm-eval itself builds the task from it."""
    library = TaskLibrary(None, builtin=True)
    [dataset] = library.datasets("arc_easy")
    assert (dataset.task, dataset.path, dataset.name, dataset.kwargs) == ("arc_easy", ARC, "ARC-Easy", {})
    assert dataset.offline_problem() is not None
    cache_hub_dataset(hf_cache, ARC, "ARC-Easy", ARC_ROWS, ARC_SPLITS)
    assert dataset.offline_problem() is None
    library.check_datasets("arc_easy", FETCH)
    task = lm_eval_tasks().load(["arc_easy"])["tasks"]["arc_easy"]
    assert len(task.eval_docs) == 2


def test_another_config_of_the_dataset_in_the_cache_is_refused_as_lm_eval_would_fail(hf_cache: Path) -> None:
    """ARC-Easy cached is no ARC-Challenge: datasets finds the repository in the cache (which is all that a check of
    its module saw, so the workers failed after the run started) but not that config, and neither does lm-eval."""
    from datasets.load import dataset_module_factory

    cache_hub_dataset(hf_cache, ARC, "ARC-Easy", [ARC_ROW], ARC_SPLITS)
    dataset_module_factory(ARC)  # the repository is found ...
    with pytest.raises(ConfigError) as refused:
        TaskLibrary(None, builtin=True).check_datasets("arc_challenge", FETCH)
    assert str(refused.value).startswith(
        f"task 'arc_challenge' reads dataset '{ARC}' (config 'ARC-Challenge'), which is not in the local Hugging "
        f"Face cache {hf_cache} (datasets: Couldn't find cache for {ARC} for config 'ARC-Challenge'); runs are "
        f"offline by default, so fill the cache once, on a machine with network: {FETCH}"
    )
    with pytest.raises(ValueError, match="Couldn't find cache"):  # ... and lm-eval fails on the config
        lm_eval_tasks().load(["arc_challenge"])


class _Recorder:
    """lm-eval's TaskFactory with each task's final config recorded instead of the task built (which would load
    its dataset): the reference for which datasets a group, tag or task reads."""

    def __init__(self) -> None:
        from lm_eval.tasks._factory import TaskFactory

        recorded: list[dict[str, Any]] = []

        class Factory(TaskFactory):
            def _build_task(self, entry: Any, overrides: dict[str, Any] | None) -> Any:
                config = self._load_full_config(entry, overrides)
                recorded.append(config)
                return SimpleNamespace(task_name=config["task"])

        self.factory, self.recorded = Factory(), recorded

    def datasets(self, name: str) -> set[tuple[str, str | None, str]]:
        index = dict(lm_eval_tasks().task_index)
        self.factory.build(index[name], registry=index)
        return {(c["dataset_path"], c.get("dataset_name"), repr(c.get("dataset_kwargs") or {})) for c in self.recorded}


@pytest.mark.parametrize("name", ["arc_easy", "ai2_arc", "mmlu"], ids=["task", "tag", "group-of-groups"])
def test_a_name_s_datasets_are_those_lm_eval_s_factory_builds(name: str) -> None:
    ours = TaskLibrary(None, builtin=True).datasets(name)
    assert {(d.path, d.name, repr(d.kwargs)) for d in ours} == _Recorder().datasets(name)
    assert len(ours) == {"arc_easy": 1, "ai2_arc": 2, "mmlu": 57}[name]


def test_a_group_is_refused_for_the_first_of_its_tasks_whose_dataset_is_missing(hf_cache: Path) -> None:
    cache_hub_dataset(hf_cache, ARC, "ARC-Easy", [ARC_ROW], ARC_SPLITS)
    with pytest.raises(ConfigError, match=r"^task 'ai2_arc' \(its task 'arc_challenge'\) reads dataset"):
        TaskLibrary(None, builtin=True).check_datasets("ai2_arc", FETCH)


def test_without_tasks_dir_a_task_of_one_s_own_is_one_line_with_the_fix() -> None:
    with pytest.raises(ConfigError) as no_builtin:
        TaskLibrary(None).config("toy_add")
    assert str(no_builtin.value) == (
        "task 'toy_add' has no task YAML and no tasks_dir is set; set tasks_dir to the folder with its task YAML, or "
        "builtin_tasks: true for lm-eval's own"
    )
    with pytest.raises(ConfigError) as builtin:
        TaskLibrary(None, builtin=True).config("arc_eazy")
    assert str(builtin.value) == (
        "task 'arc_eazy' is not one of lm-eval's tasks (did you mean 'arc_easy'?) and no tasks_dir is set; set "
        "tasks_dir to the folder with its task YAML"
    )


def _fake_download(hf_cache: Path, calls: list[tuple[str, str | None]]) -> Any:
    """datasets.load_dataset as it behaves with a network: the dataset lands in the cache (here: two rows)."""

    def load_dataset(path: str, name: str | None = None, **kwargs: Any) -> Any:
        calls.append((path, name))
        folder = cache_hub_dataset(hf_cache, path, str(name), ARC_ROWS, ARC_SPLITS)
        return SimpleNamespace(num_rows={split: 2 for split in ARC_SPLITS}, folder=folder)

    return load_dataset


def test_tasks_fetch_fills_the_cache_that_preflight_then_finds(
    tiny_pool: Path, tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each dataset once (arc_easy is also in ai2_arc), one line each; no network here, so datasets' download is
    stood in for by one that writes what a download leaves."""
    import datasets

    from evaluators.core.config import load_config
    from optimizer.experiment.config import Experiment
    from optimizer.experiment.preflight import check_objectives

    calls: list[tuple[str, str | None]] = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_download(hf_cache, calls))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: e\npool: {tiny_pool / 'pool' / 'checkpoints.yaml'}\nbuiltin_tasks: true\n"
        "objectives: [arc_easy]\nheld_out: [ai2_arc]\n"
    )
    experiment = load_config(Experiment, exp)
    with pytest.raises(ConfigError, match="mergefront tasks fetch "):
        check_objectives(experiment, exp)
    capsys.readouterr()
    assert main(["tasks", "fetch", str(exp)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert calls == [(ARC, "ARC-Easy"), (ARC, "ARC-Challenge")]
    assert lines == [
        f"arc_easy: '{ARC}' (config 'ARC-Easy'): train 2, validation 2, test 2",
        f"arc_challenge: '{ARC}' (config 'ARC-Challenge'): train 2, validation 2, test 2",
        f"2 datasets in the local cache {hf_cache}, where runs read them offline",
    ]
    check_objectives(experiment, exp)


def test_tasks_fetch_refuses_an_offline_shell_at_once(
    hf_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tasks", "fetch", str(tmp_path / "not-read.yaml")]) == 2
    assert capsys.readouterr().err == (
        "mergefront: error: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set in this shell, so nothing can be downloaded; "
        "unset both for this command\n"
    )


def test_tasks_fetch_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["tasks", "fetch", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0 and "usage: mergefront tasks fetch [-h] [-v] [experiment]" in help_text
    assert "into the local Hugging Face cache" in help_text and "Runs are offline" in help_text


@pytest.mark.parametrize("offline", [True, False])
def test_only_a_command_that_downloads_leaves_the_hub_reachable(offline: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TQDM_DISABLE"):
        monkeypatch.delenv(key, raising=False)
    apply_process_env(offline=offline)
    assert os.environ.get("HF_HUB_OFFLINE") == os.environ.get("HF_DATASETS_OFFLINE") == ("1" if offline else None)
    assert os.environ["TQDM_DISABLE"] == "1"


def test_a_dataset_is_compared_by_what_it_loads() -> None:
    a = TaskDataset.of(
        "a", {"dataset_path": ARC, "dataset_name": "ARC-Easy", "dataset_kwargs": {"trust_remote_code": True}}
    )
    b = TaskDataset.of("b", {"dataset_path": ARC, "dataset_name": "ARC-Easy"})
    assert a is not None and b is not None and a.same_data(b) and a.kwargs == {}
    assert TaskDataset.of("py", {"class": "x.Task"}) is None
