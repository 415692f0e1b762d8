"""Shared fixtures: a tiny toy pool built in seconds, and one local Ray session for e2e tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from evaluators.environment import apply_process_env

apply_process_env()
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from evaluators.toy.build import ModelShape, ToyRecipe, build_toy_pool, focus
from evaluators.toy.train import Stage

TINY = ToyRecipe(
    seed=7,
    shape=ModelShape(hidden_size=64, intermediate_size=128, layers=1, heads=1, head_dim=64),
    eval_examples=24,
    base=Stage(mixture={"add": 1.0, "reverse": 1.0, "sort": 1.0, "shift": 1.0}, steps=40, lr=3e-3, batch_size=32),
    members={
        "add": Stage(focus("add", 0.9), steps=25, lr=3e-3, batch_size=32),
        "reverse": Stage(focus("reverse", 0.9), steps=25, lr=3e-3, batch_size=32),
        "sort": Stage(focus("sort", 0.9), steps=25, lr=3e-3, batch_size=32),
        "shift": Stage(focus("shift", 0.9), steps=25, lr=3e-3, batch_size=32),
    },
)


@pytest.fixture(scope="session")
def tiny_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-member toy pool (plus its tasks under ``tasks/``); returns its directory."""
    root = tmp_path_factory.mktemp("tiny")
    build_toy_pool(root / "pool", root / "tasks", TINY, progress=False)
    return root


@pytest.fixture
def pool_copy(tiny_pool: Path, tmp_path: Path) -> Path:
    """A private, editable copy of the tiny pool directory tree."""
    shutil.copytree(tiny_pool, tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.fixture(scope="session")
def ray_session():  # type: ignore[no-untyped-def]
    """One local Ray for all e2e tests (starting Ray takes seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_run(tiny_pool: Path, tmp_path_factory: pytest.TempPathFactory, ray_session) -> Path:  # type: ignore[no-untyped-def]
    """A finished 7-trial search on the tiny pool, shared read-only by the tests that inspect or export runs."""
    from optimizer.cli import main

    root = tmp_path_factory.mktemp("run")
    exp = write_experiment(root, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=7)
    assert main(["search", str(exp), "--runs-dir", str(root / "runs"), "--no-progress"]) == 0
    return root / "runs" / "tiny"


def write_experiment(directory: Path, pool_file: Path, tasks_dir: Path, extra: str = "", trials: int = 6) -> Path:
    """An experiment YAML for the tiny pool: perplexity on add (min) and accuracy on reverse (max)."""
    path = directory / "exp.yaml"
    path.write_text(
        f"""\
name: tiny
pool: {pool_file}
tasks_dir: {tasks_dir}
objectives:
  - {{task: toy_add, metric: perplexity, direction: minimize}}
  - {{task: toy_reverse, metric: acc, direction: maximize}}
budget: {{trials: {trials}}}
workers: {{count: 2, threads: 1, batch_size: 32}}
{extra}"""
    )
    return path
