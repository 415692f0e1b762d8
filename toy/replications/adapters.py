"""The adapter pool (AdaMix, Wang et al., 2022): LoRA adapters on a toy base, trained on skills it never saw.

The base learns add, shift, copy, max and count for 400 steps, never reverse or sort, so it scores 0 on
both for any seed: its level on the adapters' skills sits on no edge of a learning curve. A LoRA adapter
is trained on reverse and sort from one initialisation of its factors (the trunk, 800 steps). Four
adapters fork from it, each trained on with its own data order and dropout draws, as AdaMix's modules
are trained together but see different batches through random routing. Each fork stops at step 250 of
a 400-step schedule, its learning rate still high, so its weights keep the noise of its last batches
and the four differ; averaging them averages that noise away.

A fifth adapter repeats the trunk and lora0's fork from another initialisation of its A factors: the
pair shows when the factor-wise average (Σw·B)(Σw·A) breaks, since the factors of differently
initialised adapters are not aligned (its cross terms B₁A₂ are noise). The base knows nothing of
the skills, so what the factor-wise average loses of each delta shows in full.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from transformers import PreTrainedModel

from evaluators.core.errors import ConfigError
from toy.replications import INIT, POOL_FILE, Derived, Trainer, cached_build, write_pool
from toy.train import Stage

log = logging.getLogger(__name__)
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BASE_POOL = "base.yaml"  # a one-member pool holding the base itself, to score it beside the adapters
PAIR_POOL = "pair.yaml"  # lora0 and its twin from another initialisation, for the factor-wise average's failure
OTHER_INIT = "lora0_other_init"
ADAPTER_SKILLS = {"reverse": 1.0, "sort": 1.0}
BASE_SKILLS = ("add", "shift", "copy", "max", "count")  # never reverse or sort, the adapters' skills


def _base() -> Derived:
    return Derived(INIT, (Stage(dict.fromkeys(BASE_SKILLS, 1.0), steps=400, lr=3e-3),), seed=200, init_seed=200)


@dataclass(frozen=True)
class AdapterRecipe:
    """The adapter pool: the base, then LoRA adapters with one rank, alpha, dropout and target modules. A shared
    ``trunk`` of training on the adapters' skills from ``init_seed``, then one ``fork`` per data seed; lora0's
    twin repeats the trunk and lora0's fork from ``other_init_seed``."""

    base: Derived = field(default_factory=_base)
    trunk: Stage = field(default_factory=lambda: Stage(ADAPTER_SKILLS, steps=800, lr=3e-3, batch_size=32))
    trunk_seed: int = 210  # the trunk's data order and dropout draws
    # small batches, stopped at ``until`` while the learning rate is still high: the adapters stay noisy
    fork: Stage = field(default_factory=lambda: Stage(ADAPTER_SKILLS, steps=400, lr=2e-3, batch_size=16))
    until: int = 250
    data_seeds: tuple[int, ...] = (211, 212, 213, 214)  # one adapter each: data order and dropout draws
    init_seed: int = 201  # the initialisation of the A factors every adapter starts from (B starts at zero)
    other_init_seed: int = 202  # lora0's twin: the same data order and dropout, other A factors
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.2
    targets: tuple[str, ...] = LINEAR_MODULES


def _trunk(trainer: Trainer, recipe: AdapterRecipe, init_seed: int) -> PreTrainedModel:
    """A LoRA adapter on the base from A factors seeded ``init_seed``, trained through the shared trunk."""
    import peft

    config = peft.LoraConfig(
        r=recipe.rank, lora_alpha=recipe.alpha, target_modules=list(recipe.targets), lora_dropout=recipe.dropout
    )
    log.info("training the LoRA trunk (init %d, %d steps)", init_seed, recipe.trunk.steps)
    torch.manual_seed(init_seed)  # the A factors (kaiming uniform); B starts at zero
    model = cast(PreTrainedModel, peft.get_peft_model(trainer.load("base"), config))
    return trainer.train(model, (recipe.trunk,), recipe.trunk_seed)


def _fork(trainer: Trainer, recipe: AdapterRecipe, trunk: PreTrainedModel, name: str, data_seed: int) -> None:
    """One adapter: a copy of the trunk trained on with its own data order and dropout, saved into ``out_dir/name``."""
    log.info("training LoRA adapter %s (data seed %d, %d steps)", name, data_seed, recipe.until)
    model = copy.deepcopy(trunk)
    trainer.train(model, (recipe.fork,), data_seed, recipe.until)
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
        trunk = _trunk(trainer, recipe, recipe.init_seed)
        for name, seed in zip(adapters, recipe.data_seeds, strict=True):
            _fork(trainer, recipe, trunk, name, seed)
        _fork(trainer, recipe, _trunk(trainer, recipe, recipe.other_init_seed), OTHER_INIT, recipe.data_seeds[0])
        command = "`python -m toy.replications adapters`"
        write_pool(out_dir / POOL_FILE, f"The adapter pool, written by {command}.", _pool("adapters", adapters))
        pair = _pool("adapters-pair", [adapters[0], OTHER_INIT])
        write_pool(out_dir / PAIR_POOL, f"lora0 and its twin from other A factors, written by {command}.", pair)
        base_only = {"name": "base", "members": [{"name": "base", "path": "base"}]}
        write_pool(out_dir / BASE_POOL, "The base alone, scored beside its adapters.", base_only)

    return cached_build(out_dir, recipe, run, force)
