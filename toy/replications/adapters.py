"""The adapter pool (AdaMix, Wang et al., 2022): LoRA adapters on a toy base, trained on the skills it is weakest at.

The base learns the four toy skills for 400 steps, which leaves it short on reverse and sort. Four
LoRA adapters are trained on reverse and sort from one initialisation of their factors, each with its
own data order and dropout draws, as AdaMix's modules see different batches through random routing.
Each stops at step 500 of an 800-step schedule, its learning rate still high, so its weights keep the
noise of its last batches and the four differ; averaging them averages that noise away.

A fifth adapter repeats the first one's data order and dropout from another initialisation of its A
factors: the pair shows when the factor-wise average (Σw·B)(Σw·A) breaks, since the factors of
differently initialised adapters are not aligned (its cross terms B₁A₂ are noise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from transformers import PreTrainedModel

from evaluators.core.errors import ConfigError
from toy.replications import INIT, POOL_FILE, Derived, Trainer, cached_build, uniform_mixture, write_pool
from toy.train import Stage

log = logging.getLogger(__name__)
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BASE_POOL = "base.yaml"  # a one-member pool holding the base itself, to score it beside the adapters
PAIR_POOL = "pair.yaml"  # lora0 and its twin from another initialisation, for the factor-wise average's failure
OTHER_INIT = "lora0_other_init"


def _base() -> Derived:
    return Derived(INIT, (Stage(uniform_mixture(), steps=400, lr=3e-3),), seed=200, init_seed=200)


@dataclass(frozen=True)
class AdapterRecipe:
    """The adapter pool: the base, then LoRA adapters with one rank, alpha, dropout and target modules, trained on
    ``task``; one per data seed from ``init_seed``, plus lora0's twin from ``other_init_seed``."""

    base: Derived = field(default_factory=_base)
    # small batches, stopped at ``until`` while the learning rate is still high: the adapters stay noisy
    task: Stage = field(default_factory=lambda: Stage({"reverse": 1.0, "sort": 1.0}, steps=800, lr=2e-3, batch_size=16))
    until: int = 500
    data_seeds: tuple[int, ...] = (211, 212, 213, 214)  # one adapter each: data order and dropout draws
    init_seed: int = 201  # the initialisation of the A factors every adapter starts from (B starts at zero)
    other_init_seed: int = 202  # lora0's twin: the same data order and dropout, other A factors
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.2
    targets: tuple[str, ...] = LINEAR_MODULES


def _train_adapter(trainer: Trainer, recipe: AdapterRecipe, name: str, data_seed: int, init_seed: int) -> None:
    """One LoRA adapter on the base, saved with peft into ``out_dir/name``."""
    import peft

    config = peft.LoraConfig(
        r=recipe.rank, lora_alpha=recipe.alpha, target_modules=list(recipe.targets), lora_dropout=recipe.dropout
    )
    log.info("training LoRA adapter %s (init %d, data seed %d, %d steps)", name, init_seed, data_seed, recipe.until)
    torch.manual_seed(init_seed)  # the A factors (kaiming uniform); B starts at zero
    model = peft.get_peft_model(trainer.load("base"), config)
    trainer.train(cast(PreTrainedModel, model), (recipe.task,), data_seed, recipe.until)  # trains as its model
    model.save_pretrained(str(trainer.out_dir / name))


def _pool(name: str, members: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "bases": {"base": {"path": "base"}},
        "members": [{"name": m, "kind": "lora", "path": m, "base": "base"} for m in members],
    }


def build(out_dir: Path, recipe: AdapterRecipe = AdapterRecipe(), force: bool = False) -> bool:
    """Train the base and the adapters and write the three pool files; False when the cached build is current."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ConfigError("the adapter pool is trained with peft; install it with `pip install -e '.[test]'`") from None

    def run(trainer: Trainer) -> None:
        trainer.derive("base", recipe.base)
        adapters = [f"lora{i}" for i in range(len(recipe.data_seeds))]
        for name, seed in zip(adapters, recipe.data_seeds, strict=True):
            _train_adapter(trainer, recipe, name, seed, recipe.init_seed)
        _train_adapter(trainer, recipe, OTHER_INIT, recipe.data_seeds[0], recipe.other_init_seed)
        command = "`python -m toy.replications adapters`"
        write_pool(out_dir / POOL_FILE, f"The adapter pool, written by {command}.", _pool("adapters", adapters))
        pair = _pool("adapters-pair", [adapters[0], OTHER_INIT])
        write_pool(out_dir / PAIR_POOL, f"lora0 and its twin from other A factors, written by {command}.", pair)
        base_only = {"name": "base", "members": [{"name": "base", "path": "base"}]}
        write_pool(out_dir / BASE_POOL, "The base alone, scored beside its adapters.", base_only)

    return cached_build(out_dir, recipe, run, force)
