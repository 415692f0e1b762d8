"""Pool members given as Hugging Face repo ids (issue 17): found in the local hub cache (built here, in the layout
huggingface_hub writes: blobs, a snapshot of links to them, refs/main), offline, they merge and search like a folder
and the recipe names the repo id; absent, the command is refused with the download command, before any run
directory exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from optimizer.cli import main
from tests.helpers import cache_model, safetensors_dir, write_experiment

REPO = "toy-org/add"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache of this test, offline (huggingface_hub reads its variables once, at import)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    for name, value in (("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def pool_file(folder: Path, tiny_pool: Path, add: str, name: str = "pool.yaml") -> Path:
    """A pool of ``add`` (a repo id, or a folder) and the tiny pool's sort, copied beside the file."""
    shutil.copytree(tiny_pool / "pool" / "sort", folder / "sort", dirs_exist_ok=True)
    path = folder / name
    path.write_text(f"members:\n  - {{name: add, path: {add}}}\n  - {{name: sort, path: sort}}\n")
    return path


def merge(pool: Path, out: Path, *flags: str) -> int:
    return main(["merge", "--pool", str(pool), "--weights", "add=0.3,sort=0.7", "--out", str(out), *flags])


def test_a_cached_repo_id_merges_and_searches_and_its_recipe_names_it(
    tiny_pool: Path, tmp_path: Path, hub: Path
) -> None:
    cache_model(hub, REPO, tiny_pool / "pool" / "add")
    by_id = pool_file(tmp_path, tiny_pool, REPO)
    by_folder = pool_file(tmp_path, tiny_pool, str(tiny_pool / "pool" / "add"), "by-folder.yaml")
    assert merge(by_id, tmp_path / "m") == 0 and merge(by_folder, tmp_path / "ref") == 0
    ours, reference = safetensors_dir(tmp_path / "m"), safetensors_dir(tmp_path / "ref")
    assert ours.keys() == reference.keys() and all(torch.equal(ours[k], reference[k]) for k in ours)
    recipe = (tmp_path / "m" / "mergekit.yaml").read_text()
    assert [m["model"] for m in yaml.safe_load(recipe)["models"]] == [REPO, "./sort"] and str(hub) not in recipe

    exp = write_experiment(tmp_path, by_id, tiny_pool / "tasks", trials=3, backend="dummy")
    runs = tmp_path / "runs"
    assert main(["search", str(exp), "--runs-dir", str(runs), "--no-progress", "--in-process"]) == 0
    stored = json.loads((runs / "tiny" / "run.json").read_text())
    assert stored["pool"]["members"][0]["path"] == REPO  # the run keeps the id, not this machine's cache folder
    assert main(["export", str(runs / "tiny"), "--trial", "2", "--out", str(tmp_path / "e")]) == 0
    assert [m["model"] for m in yaml.safe_load((tmp_path / "e" / "mergekit.yaml").read_text())["models"]] == [
        REPO,
        "./sort",
    ]
    assert ModelCard.load(tmp_path / "e" / "README.md").data.base_model == [REPO]  # the folder member is no model id


def test_a_repo_id_absent_from_the_cache_is_refused_with_the_download_command(
    tiny_pool: Path, tmp_path: Path, hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = pool_file(tmp_path, tiny_pool, REPO)
    exp = write_experiment(tmp_path, pool, tiny_pool / "tasks", trials=3, backend="dummy")
    runs = tmp_path / "runs"
    capsys.readouterr()
    assert main(["search", str(exp), "--runs-dir", str(runs), "--in-process"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"members[0].path: '{REPO}' is neither a directory" in err[0], err
    assert f"nor a model in the local Hugging Face cache ({hub})" in err[0]
    assert f"fetch the model with `hf download {REPO}` or --allow-download" in err[0]
    assert not runs.exists()  # refused before any run directory
    assert merge(pool, tmp_path / "m", "--allow-download") == 2  # offline here: the download fails, and says so
    assert "nor a Hugging Face repo that downloads into" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_path_spelled_with_dot_slash_is_never_a_repo_id(
    tiny_pool: Path, tmp_path: Path, hub: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_model(hub, REPO, tiny_pool / "pool" / "add")  # the repo is cached, but the pool asks for a folder
    pool = pool_file(tmp_path, tiny_pool, f"./{REPO}")
    capsys.readouterr()
    assert merge(pool, tmp_path / "m") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"directory './{REPO}' does not exist" in err[0] and "hf download" not in err[0], err
    assert not (tmp_path / "m").exists()
