"""Relocatable runs (issue 17): a run stores no path of the machine it ran on, so a copied project resumes, exports,
warm-starts and shows its front with the original deleted; a pool file that moved is named with the option that
points the run at it (``--pool``), and the files found there must be the run's; a task's fingerprint is its
content, not its place. Real CLI commands, in this process, with the dummy backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from evaluators.core.errors import ConfigError
from optimizer.cli import main
from optimizer.experiment.config import load_experiment
from optimizer.experiment.fingerprint import check_reusable, objective_digests
from tests.helpers import MEMBERS, write_experiment

POOL = "name: project\nbases:\n  b: {path: models/base}\nmembers:\n" + "".join(
    f"  - {{name: {m}, path: models/{m}}}\n" for m in MEMBERS
)


@pytest.fixture
def project(tiny_pool: Path, tmp_path: Path) -> Path:
    """A project as a person lays it out (pool file, models, tasks, experiment: relative paths) with a finished
    6-trial search in runs/tiny."""
    root = tmp_path / "project"
    shutil.copytree(tiny_pool / "pool", root / "models")
    shutil.copytree(tiny_pool / "tasks", root / "tasks")
    (root / "checkpoints.yaml").write_text(POOL)
    exp = write_experiment(root, Path("checkpoints.yaml"), Path("tasks"), backend="dummy")
    assert main(["search", str(exp), "--runs-dir", str(root / "runs"), "--no-progress", "--in-process"]) == 0
    return root


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """A command line's exit code, stdout and stderr lines."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_a_copied_project_works_with_the_original_gone(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    shutil.rmtree(project)
    run = copy / "runs" / "tiny"
    for path in run.rglob("*"):  # nothing the run stores names the place it ran in
        assert str(project).encode() not in path.read_bytes(), path
    go = ("--no-progress", "--in-process")

    assert cli(capsys, "resume", str(run), "--trials", "8", *go)[0] == 0
    assert (pd.read_parquet(run / "trials.parquet")["state"] == "COMPLETE").sum() == 8

    out = copy / "merged"
    assert cli(capsys, "export", str(run), "--trial", "4", "--out", str(out))[0] == 0  # the uniform soup
    text = (out / "mergekit.yaml").read_text()
    assert str(tmp_path) not in text and str(tmp_path) not in (out / "README.md").read_text()
    assert "relative to its folder, .. from this" in text.replace("\n# ", " ")  # copy/ is the pool file's folder
    assert [m["model"] for m in yaml.safe_load(text)["models"]] == [f"./models/{m}" for m in MEMBERS]

    (copy / "checkpoints.yaml").write_text(POOL + "  - {name: base, path: models/base}\n")
    code, printed, _ = cli(capsys, "watch", str(copy / "exp.yaml"), "--once", "--runs-dir", str(copy / "runs"), *go)
    assert code == 0 and "(added: base): warm-started" in printed.splitlines()[0], printed
    second = pd.read_parquet(copy / "runs" / "tiny-2" / "trials.parquet")
    assert second["imported_from"].str.startswith("tiny#").sum() == 8  # every old score reused
    assert (second["source"] == "single:base").sum() == 1  # and the new member scored alone

    code, printed, _ = cli(capsys, "front", str(copy / "runs" / "tiny-2"))
    assert code == 0 and "toy_reverse/acc" in printed


def test_a_moved_pool_file_is_named_and_found_with_the_pool_option(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = project / "runs" / "tiny"
    (project / "pools").mkdir()
    moved = project / "pools" / "checkpoints.yaml"
    moved.write_text(POOL.replace("path: models/", "path: ../models/"))
    (project / "checkpoints.yaml").unlink()
    for command in (["resume", str(run), "--in-process"], ["export", str(run), "--trial", "0", "--out", "x"]):
        code, out, err = cli(capsys, *command)
        assert code == 2 and out == "" and len(err) == 1, err
        assert f"{run}/run.json: pool: file '../../checkpoints.yaml' does not exist" in err[0]
        assert f"(resolved to {project}/checkpoints.yaml); if the pool file moved, pass --pool PATH" in err[0]

    changed = project / "changed.yaml"  # the same names, but 'sort' is another checkpoint
    changed.write_text(POOL.replace("models/sort", "models/shift"))
    code, _, err = cli(capsys, "resume", str(run), "--pool", str(changed), "--in-process")
    assert code == 2 and "pool's files changed since" in err[0] and "(changed: sort)" in err[0], err

    go = ("--no-progress", "--in-process")
    assert cli(capsys, "resume", str(run), "--pool", str(moved), "--trials", "7", *go)[0] == 0
    stored = json.loads((run / "run.json").read_text())
    assert stored["experiment"]["pool"] == "../../pools/checkpoints.yaml"  # where the run now looks
    assert stored["pool"]["members"][0]["path"] == "../models/add"  # as the pool file writes it
    assert cli(capsys, "resume", str(run), "--trials", "8", *go)[0] == 0  # and finds it without the option


def test_a_moved_task_folder_is_named_and_must_hold_the_runs_tasks(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = project / "runs" / "tiny"
    export = ["export", str(run), "--trial", "0", "--out", str(project / "out")]
    (project / "tasks").rename(project / "moved")
    code, _, err = cli(capsys, *export)
    assert code == 2 and len(err) == 1 and "tasks_dir: directory '../../tasks' does not exist" in err[0], err
    assert "if the task folder moved, pass --tasks-dir PATH (its new place)" in err[0]

    shutil.copytree(project / "moved", project / "edited")
    edited = project / "edited" / "toy_reverse.yaml"
    edited.write_text(edited.read_text().replace('doc_to_target: "{{target}}"', 'doc_to_target: " {{target}}"'))
    code, _, err = cli(capsys, *export, "--tasks-dir", str(project / "edited"))
    assert code == 2 and "task 'toy_reverse' of objective 'toy_reverse/acc' there is not the one" in err[0], err
    assert cli(capsys, *export, "--tasks-dir", str(project / "moved"))[0] == 0


def test_a_warm_start_from_a_run_fingerprinted_by_paths_says_so() -> None:
    objective = {"spec": {"task": "toy_add"}, "task": "0" * 16}
    new = {"objectives": {"add": objective}, "members": {}}
    old = {"objectives": {"add": {**objective, "task": "0" * 32}}, "members": {}}  # a digest of config + paths
    with pytest.raises(ConfigError, match="objective 'add' was fingerprinted by an older mergefront"):
        check_reusable(old, new, Path("runs/old"))


def test_a_tasks_fingerprint_is_its_content_not_its_place(tiny_pool: Path, tmp_path: Path) -> None:
    def digests(tasks: Path) -> dict[str, object]:
        pool = tiny_pool / "pool" / "checkpoints.yaml"
        return objective_digests(load_experiment(write_experiment(tmp_path, pool, tasks))[0])

    for place in ("one", "two"):
        shutil.copytree(tiny_pool / "tasks", tmp_path / place)
    assert digests(tmp_path / "one") == digests(tmp_path / "two")
    data = tmp_path / "two" / "data" / "add_search.jsonl"
    rows = data.read_text().splitlines()
    rows[0] = json.dumps(
        {**json.loads(rows[0]), "target": "999"}
    )  # one answer of one objective (no sum of two numbers below 100)
    data.write_text("\n".join(rows) + "\n")
    changed = [label for label, d in digests(tmp_path / "two").items() if d != digests(tmp_path / "one")[label]]
    assert changed == ["toy_add/perplexity"]


def test_a_run_under_a_symlinked_runs_folder_finds_its_project(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``runs/`` a link to storage elsewhere: the run's ``../../checkpoints.yaml`` is beside the link, as a shell's
    ``cd ..`` would find it, not beside the storage."""
    root = tmp_path / "project"
    shutil.copytree(tiny_pool / "pool", root / "models")
    shutil.copytree(tiny_pool / "tasks", root / "tasks")
    (root / "checkpoints.yaml").write_text(POOL)
    (tmp_path / "storage" / "runs").mkdir(parents=True)
    (root / "runs").symlink_to(tmp_path / "storage" / "runs")
    exp = write_experiment(root, Path("checkpoints.yaml"), Path("tasks"), backend="dummy", trials=5)
    go = ("--no-progress", "--in-process")
    assert cli(capsys, "search", str(exp), "--runs-dir", str(root / "runs"), *go)[0] == 0
    run = root / "runs" / "tiny"
    assert cli(capsys, "export", str(run), "--trial", "4", "--out", str(tmp_path / "out"), "--no-progress")[0] == 0
    assert cli(capsys, "resume", str(run), "--trials", "6", *go)[0] == 0


def test_a_dataset_folder_is_fingerprinted_by_every_file_below_it(tiny_pool: Path, tmp_path: Path) -> None:
    """A task whose ``dataset_path`` is a folder of CSV files (in a subfolder too): changing one answer there changes
    the task's fingerprint, so a warm start does not reuse scores of other data."""
    tasks = tmp_path / "tasks"
    shutil.copytree(tiny_pool / "tasks", tasks)
    (tasks / "sums" / "part").mkdir(parents=True)
    (tasks / "sums" / "part" / "test.csv").write_text("question,answer\n1+1=,2\n2+2=,4\n")
    (tasks / "sums.yaml").write_text(
        "task: sums\ndataset_path: sums\ndataset_kwargs: {data_files: {test: part/test.csv}}\ntest_split: test\n"
        "output_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]\n"
    )
    exp = write_experiment(
        tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tasks, "objectives: [{task: sums, metric: exact_match}]\n"
    )

    def digest() -> object:
        return objective_digests(load_experiment(exp)[0])

    before = digest()
    (tasks / "sums" / "part" / "test.csv").write_text("question,answer\n1+1=,2\n2+2=,5\n")
    assert digest() != before
