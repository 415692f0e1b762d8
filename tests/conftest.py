"""Shared fixtures: a tiny toy pool (trained once per machine, copied per session), one local Ray session for
e2e tests, and finished runs shared read-only. Helpers that are not fixtures are in tests/helpers.py."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from evaluators.core.environment import apply_process_env

apply_process_env()
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import toy
from tests.helpers import TINY_RUN_PRINTED, TINY_RUN_TRIALS, search, tiny_experiment, write_experiment
from toy.build import ModelShape, ToyRecipe, build_toy_pool, focus
from toy.train import Stage

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


def built_tiny_pool() -> Path:
    """The tiny pool and its tasks, trained once per machine into a cache directory keyed by the recipe and
    the toy builder's code (``MERGEFRONT_TEST_CACHE``, default ~/.cache/mergefront-tests): training takes
    40-100 s on 2 loaded CPUs. Built beside the cache entry and renamed into place, under a lock, so a
    concurrent session waits and an interrupted build leaves nothing."""
    sources = sorted(Path(toy.__file__).parent.glob("*.py"))
    key = hashlib.sha256(TINY.fingerprint().encode() + b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cache = Path(os.environ.get("MERGEFRONT_TEST_CACHE", Path.home() / ".cache" / "mergefront-tests"))
    entry = cache / f"tiny-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not entry.is_dir():
            partial = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
            try:
                build_toy_pool(partial / "pool", partial / "tasks", TINY, progress=False)
                partial.rename(entry)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return entry


@pytest.fixture(scope="session")
def tiny_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-member toy pool (plus its tasks under ``tasks/``), this session's own copy; returns its directory."""
    root = tmp_path_factory.mktemp("tiny")
    shutil.copytree(built_tiny_pool(), root, dirs_exist_ok=True)
    return root


@pytest.fixture
def pool_copy(tiny_pool: Path, tmp_path: Path) -> Path:
    """A private, editable copy of the tiny pool directory tree."""
    shutil.copytree(tiny_pool, tmp_path / "tiny")
    return tmp_path / "tiny"


@pytest.fixture
def hf_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty, offline Hugging Face caches of the test's own (outside tmp_path: datasets leaves lock files in its
    cache), set in the environment and in the already imported datasets, which reads it at import; returns the
    datasets cache."""
    import datasets.config

    root = tmp_path_factory.mktemp("hf")
    for key, path in (("HF_HOME", root), ("HF_DATASETS_CACHE", root / "datasets"), ("HF_HUB_CACHE", root / "hub")):
        monkeypatch.setenv(key, str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", root / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return root / "datasets"


@pytest.fixture(scope="session")
def ray_session():  # type: ignore[no-untyped-def]
    """One local Ray for all e2e tests (starting Ray takes seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_run(tiny_pool: Path, tmp_path_factory: pytest.TempPathFactory, ray_session) -> Path:  # type: ignore[no-untyped-def]
    """A finished 8-trial search on the tiny pool over two Ray actors with the HF backend and lm-eval, shared
    read-only by the tests that inspect, compare or export runs; what the command printed is in
    ``TINY_RUN_PRINTED`` beside the run directory."""
    from optimizer.cli import main

    root = tmp_path_factory.mktemp("run")
    exp = write_experiment(root, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=TINY_RUN_TRIALS)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["search", str(exp), "--runs-dir", str(root / "runs"), "--no-progress"]) == 0
    (root / "runs" / TINY_RUN_PRINTED).write_text(printed.getvalue())
    return root / "runs" / "tiny"


@pytest.fixture(scope="session")
def dummy_run(tiny_pool: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_run's search with the dummy backend in this process (no Ray, synthetic scores): for tests of
    what is done with a finished run."""
    root = tmp_path_factory.mktemp("dummy-run")
    search(tiny_experiment(tiny_pool, root, trials=7), root / "runs", "--in-process")
    return root / "runs" / "tiny"
