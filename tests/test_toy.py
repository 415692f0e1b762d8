"""The toy pool: shipped task data matches its generator, splits are disjoint, builds are deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from tests.conftest import TINY
from toy.build import ToyRecipe, build_toy_pool, write_tasks
from toy.scores import trade_offs
from toy.skills import SKILLS

SHIPPED = Path(__file__).resolve().parents[1] / "experiments" / "tasks" / "toy"


def test_shipped_tasks_are_what_the_default_recipe_generates(tmp_path: Path) -> None:
    recipe = ToyRecipe()
    write_tasks(tmp_path, recipe.seed, recipe.eval_examples)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated == sorted(p.relative_to(SHIPPED) for p in SHIPPED.rglob("*") if p.is_file())
    for rel in generated:
        assert (tmp_path / rel).read_text() == (SHIPPED / rel).read_text(), rel


def test_search_and_report_splits_are_disjoint_and_correct() -> None:
    for skill in SKILLS:
        rows = {
            split: [json.loads(line) for line in (SHIPPED / "data" / f"{skill}_{split}.jsonl").read_text().splitlines()]
            for split in ("search", "report")
        }
        prompts = {split: {r["prompt"] for r in split_rows} for split, split_rows in rows.items()}
        assert len(prompts["search"]) == len(rows["search"]) == 200
        assert not prompts["search"] & prompts["report"]
    add = json.loads((SHIPPED / "data" / "add_search.jsonl").read_text().splitlines()[0])
    a, b = add["prompt"].rstrip("=").split("+")
    assert int(add["target"][::-1]) == int(a) + int(b)  # least-significant digit first


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_two_builds_give_identical_files_and_a_third_is_cached(tmp_path: Path) -> None:
    """Two fresh builds of a small recipe, one after the other in this process (torch's thread count set to 2
    in between, as a busy machine's default might be): every file, weights included, hashes the same."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert build_toy_pool(first / "pool", first / "tasks", TINY, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert build_toy_pool(second / "pool", second / "tasks", TINY, progress=False)
    finally:
        torch.set_num_threads(threads)
    digests = _digests(first)
    assert {"pool/base/model.safetensors", "pool/add/model.safetensors", "tasks/toy_add.yaml"} <= digests.keys()
    assert digests == _digests(second)
    assert not build_toy_pool(first / "pool", first / "tasks", TINY, progress=False)


def test_trade_off_verdict() -> None:
    assert trade_offs({"a": {"x": 1.0, "y": 0.0}, "b": {"x": 0.0, "y": 1.0}}) == (True, True)
    assert trade_offs({"a": {"x": 1.0, "y": 1.0}, "b": {"x": 0.0, "y": 0.5}}) == (False, False)
