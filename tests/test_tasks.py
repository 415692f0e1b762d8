"""The task library: data paths made absolute, code-running tags refused, includes merged, and which way each
metric is better (as lm-eval decides it), which gives objectives their default direction."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from evaluators.core.config import load_config
from evaluators.core.errors import ConfigError
from evaluators.scoring.tasks import TaskLibrary
from optimizer.experiment.config import Experiment


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


def test_an_include_list_merges_as_lm_eval_merges_it(tmp_path: Path) -> None:
    from lm_eval.tasks._yaml_loader import load_yaml

    (tmp_path / "_a.yaml").write_text("output_type: loglikelihood\nnum_fewshot: 1\ntest_split: a\n")
    (tmp_path / "_b.yaml").write_text("include: _c.yaml\nnum_fewshot: 2\ntask_list: [x]\n")
    (tmp_path / "_c.yaml").write_text("test_split: c\nrepeats: 3\n")
    (tmp_path / "t.yaml").write_text("include: [_a.yaml, _b.yaml]\ntask: t\nrepeats: 4\n")
    expected = load_yaml(tmp_path / "t.yaml", resolve_func=False)
    assert TaskLibrary(tmp_path).config("t") == expected
    assert expected["num_fewshot"] == 2 and expected["test_split"] == "c" and "task_list" not in expected


def test_an_include_cycle_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "_a.yaml").write_text("include: _b.yaml\n")
    (tmp_path / "_b.yaml").write_text("include: [_a.yaml]\n")
    (tmp_path / "t.yaml").write_text("include: _a.yaml\ntask: t\n")
    with pytest.raises(
        ConfigError,
        match=r"_a\.yaml: its includes form a cycle \(\S*_a\.yaml -> \S*_b\.yaml -> \S*_a\.yaml\); remove one",
    ):
        TaskLibrary(tmp_path)


LOCAL_TASK = """\
task: local_folder
dataset_path: {path}
test_split: train
output_type: loglikelihood
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def test_a_dataset_folder_next_to_the_task_loads_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lm-eval hands dataset_path to datasets.load_dataset, which reads a relative folder from the working directory
    (elsewhere it asks the hub); the library resolves it next to the YAML, as it does data_files."""
    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = tmp_path / "tasks"
    (tasks / "examples").mkdir(parents=True)
    rows = (f'{{"prompt": "{i}+{i}=", "target": "{2 * i}"}}\n' for i in range(3))
    (tasks / "examples" / "data.jsonl").write_text("".join(rows))
    (tasks / "local.yaml").write_text(LOCAL_TASK.format(path="examples"))
    config = TaskLibrary(tasks).config("local_folder")
    assert config["dataset_path"] == str((tasks / "examples").resolve())
    monkeypatch.chdir(tmp_path / "tasks" / "examples")
    task = get_task_dict([config], TaskManager(include_defaults=False))["local_folder"]
    assert len(task.eval_docs) == 3


def test_a_hub_name_is_left_to_datasets(tmp_path: Path) -> None:
    """A name that is no folder beside the task stays as written: datasets looks for it in its cache (or the hub)."""
    (tmp_path / "t.yaml").write_text(LOCAL_TASK.format(path="openai/gsm8k"))
    assert TaskLibrary(tmp_path).config("local_folder")["dataset_path"] == "openai/gsm8k"


def _without_higher_is_better(tiny_pool: Path, tmp_path: Path) -> TaskLibrary:
    """The tiny tasks, with toy_add's metric_list saying nothing about higher_is_better."""
    shutil.copytree(tiny_pool / "tasks", tmp_path / "tasks")
    path = tmp_path / "tasks" / "toy_add.yaml"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if "higher_is_better" not in line))
    return TaskLibrary(tmp_path / "tasks")


@pytest.mark.parametrize("declared", [True, False], ids=["in-the-task", "lm-eval-default"])
def test_higher_is_better_is_what_lm_eval_builds(tiny_pool: Path, tmp_path: Path, declared: bool) -> None:
    """The reference is lm-eval's own task object: its metric_list flag, else its registry's default for the metric."""
    from lm_eval.tasks import TaskManager, get_task_dict

    library = TaskLibrary(tiny_pool / "tasks") if declared else _without_higher_is_better(tiny_pool, tmp_path)
    for name in ("toy_add", "toy_reverse"):
        task = get_task_dict([library.config(name)], TaskManager(include_defaults=False))[name]
        expected = task.higher_is_better()
        ours = {m: library.higher_is_better(name, m) for m in expected}
        assert ours == expected == {"acc": True, "perplexity": False}


def _experiment(tmp_path: Path, tasks: Path, objectives: str, extra: str = "") -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: e\npool: {tmp_path / 'pool.yaml'}\ntasks_dir: {tasks}\nobjectives: {objectives}\n{extra}")
    (tmp_path / "pool.yaml").write_text("members: [{name: a, path: .}]\n")
    return path


def test_directions_default_from_the_task(tiny_pool: Path, tmp_path: Path) -> None:
    """perplexity is minimised and acc maximised without saying so, also where only lm-eval's default says which."""
    library = _without_higher_is_better(tiny_pool, tmp_path)
    objectives = "[{task: toy_add, metric: perplexity}, toy_add, {task: toy_reverse, metric: perplexity}]"
    exp = _experiment(tmp_path, library.directory, objectives)
    assert load_config(Experiment, exp).directions == ["minimize", "maximize", "minimize"]


def test_a_stored_experiment_keeps_its_directions_without_reading_tasks(
    tiny_pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run.json holds explicit directions: a run reloads as it was stored, even one from before directions defaulted
    from the task (perplexity maximised), and without its task files being read."""
    exp = _experiment(tmp_path, tiny_pool / "tasks", "[{task: toy_add, metric: perplexity}, toy_reverse]")
    stored = load_config(Experiment, exp).model_dump(mode="json")
    monkeypatch.setattr(TaskLibrary, "__init__", lambda *args: pytest.fail("the task files were read"))
    assert Experiment.model_validate(stored).directions == ["minimize", "maximize"]
    stored["objectives"][0]["direction"] = "maximize"
    assert Experiment.model_validate(stored).directions == ["maximize", "maximize"]


def test_a_builtin_task_s_direction_comes_from_lm_eval(tmp_path: Path) -> None:
    """wikitext's metric_list leaves higher_is_better out, so lm-eval ranks word_perplexity by its registry default."""
    from lm_eval.api.registry import is_higher_better

    (tmp_path / "tasks").mkdir()
    objectives = "[{task: wikitext, metric: word_perplexity}]"
    exp = _experiment(tmp_path, tmp_path / "tasks", objectives, "builtin_tasks: true\n")
    expected = "maximize" if is_higher_better("word_perplexity") else "minimize"
    assert load_config(Experiment, exp).directions == [expected] == ["minimize"]


def test_without_tasks_dir_an_experiment_fingerprints_ships_and_reloads(tiny_pool: Path, tmp_path: Path) -> None:
    """tasks_dir is optional: everything that reads it (fingerprint, worker spec, run.json's reload) copes with none."""
    from optimizer.experiment.config import load_experiment
    from optimizer.experiment.fingerprint import fingerprint

    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: e\npool: {tiny_pool / 'pool' / 'checkpoints.yaml'}\nbuiltin_tasks: true\nobjectives: [arc_easy]\n"
    )
    experiment, pool = load_experiment(exp)
    assert experiment.tasks_dir is None and experiment.directions == ["maximize"]
    assert fingerprint(experiment, pool)["objectives"]["arc_easy/acc"]["task"]
    assert experiment.worker_spec(pool).tasks_dir is None
    assert Experiment.model_validate(experiment.model_dump(mode="json")) == experiment
