"""The adapter replication's own logic: which adapters share their initialisation, the pool files, and which
comparisons its results make (against the best single adapter by search macro, not by held-out score)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from evaluators.pool import load_pool
from experiments.replications.adapters import Rows, markdown
from experiments.replications.common import Row
from toy.replications import POOL_FILE
from toy.replications.adapters import BASE_POOL, OTHER_INIT, PAIR_POOL, AdapterRecipe, build

peft = pytest.importorskip("peft")


def _a_factors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(directory / "adapter_model.safetensors").items() if "lora_A" in k}


def test_adapters_share_one_initialisation_and_the_twin_has_another(tmp_path: Path) -> None:
    untrained = AdapterRecipe()
    base = dataclasses.replace(untrained.base, until=0)  # no training step: the factors stay as initialised
    trunk = dataclasses.replace(untrained.trunk, steps=0)
    build(tmp_path, dataclasses.replace(untrained, base=base, trunk=trunk, until=0))
    factors = {name: _a_factors(tmp_path / name) for name in ("lora0", "lora1", "lora2", "lora3", OTHER_INIT)}
    assert all(torch.equal(factors["lora0"][k], v) for name in ("lora1", "lora3") for k, v in factors[name].items())
    assert not any(torch.equal(factors["lora0"][k], v) for k, v in factors[OTHER_INIT].items())
    assert load_pool(tmp_path / POOL_FILE).names == ["lora0", "lora1", "lora2", "lora3"]
    assert load_pool(tmp_path / PAIR_POOL).names == ["lora0", OTHER_INIT]
    assert load_pool(tmp_path / BASE_POOL).names == ["base"]


def _row(name: str, search: float, held_out: tuple[float, ...]) -> Row:
    scores = {"reverse": search, "sort": search}
    report = {"reverse": sum(held_out) / len(held_out), "sort": sum(held_out) / len(held_out)}
    return Row(name, {"a": 1.0}, scores, report, held_out_samples={"reverse": held_out, "sort": held_out})


def test_results_compare_with_the_best_single_by_search_macro() -> None:
    ones, zeros = (1.0,) * 20, (0.0,) * 20
    singles = [_row("lora0", 0.9, zeros), _row("lora1", 0.5, ones)]  # lora0 best on search, worst held out
    rows = Rows(
        singles,
        exact=_row("exact", 0.9, ones),
        factorwise=_row("factor-wise", 0.9, zeros),
        searched=_row("searched", 0.9, ones),
        searched_factorwise=_row("searched, factor-wise", 0.9, ones),
        base=_row("base", 0.1, zeros),
        pair=[
            _row("lora0", 0.9, zeros),
            _row("twin", 0.8, ones),
            _row("pair exact", 0.9, ones),
            _row("pf", 0.1, zeros),
        ],
    )
    lines = [line for line in markdown(rows).splitlines() if line.startswith("| ") and " vs " in line]
    assert [line.split(" | ")[0] for line in lines] == [
        "| exact vs lora0",
        "| searched vs lora0",
        "| factor-wise vs lora0",
        "| pair exact vs lora0",
        "| pf vs pair exact",
    ]
    assert [line.split(" | ")[-1] for line in lines] == ["beats |", "beats |", "ties |", "beats |", "loses |"]
