"""The adapter pool (AdaMix, Wang et al., 2022): LoRA adapters on the toy base, one skill mixture.

The adapters share one initialisation and differ in the order of their training data only, as
AdaMix's modules do (they see different batches through random routing). Factor-wise averaging
(Σw·B)(Σw·A) is meaningful only for factors that start alike; from different initialisations the
factors of two adapters are not aligned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch
from transformers import PreTrainedModel

from evaluators.core.errors import ConfigError
from toy.replications import POOL_FILE, TOY_PREFIX, Trainer, cached_build, uniform_mixture, write_pool
from toy.train import Stage

log = logging.getLogger(__name__)
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BASE_POOL = "base.yaml"  # a one-member pool holding the toy base itself, to score it beside the adapters


@dataclass(frozen=True)
class AdapterRecipe:
    """The LoRA adapters of the adapter pool: one per data seed, all from one initialisation, trained on the same
    mixture with the same rank, alpha and target modules."""

    stage: Stage = field(default_factory=lambda: Stage(uniform_mixture(), steps=300, lr=3e-3))
    data_seeds: tuple[int, ...] = (201, 202, 203, 204)  # one adapter each
    init_seed: int = 200  # the initialisation every adapter starts from
    rank: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = LINEAR_MODULES


def build(out_dir: Path, toy_dir: Path, recipe: AdapterRecipe = AdapterRecipe(), force: bool = False) -> bool:
    """Train the adapters with peft and write the pool files; False when the cached build is current."""
    try:
        import peft
    except ImportError:
        raise ConfigError("the adapter pool is trained with peft; install it with `pip install -e '.[test]'`") from None

    def run(trainer: Trainer) -> None:
        config = peft.LoraConfig(
            r=recipe.rank, lora_alpha=recipe.alpha, target_modules=list(recipe.targets), lora_dropout=0.0
        )
        members = []
        for i, seed in enumerate(recipe.data_seeds):
            name = f"lora{i}"
            log.info("training LoRA adapter %s (data seed %d, %d steps)", name, seed, recipe.stage.steps)
            torch.manual_seed(recipe.init_seed)  # the same A factors (B starts at zero) for every adapter
            model = peft.get_peft_model(trainer.load(TOY_PREFIX + "base"), config)
            trainer.train(cast(PreTrainedModel, model), (recipe.stage,), seed)  # peft's wrapper trains as its model
            model.save_pretrained(str(out_dir / name))
            members.append({"name": name, "kind": "lora", "path": name, "base": "toy-base"})
        bases = {"toy-base": {"path": trainer.rel(toy_dir / "base")}}
        write_pool(
            out_dir / POOL_FILE,
            "The adapter pool, written by `python -m toy.replications adapters`.",
            {"name": "adapters", "bases": bases, "members": members},
        )
        base_only = {"name": "toy-base", "members": [{"name": "toy-base", "path": trainer.rel(toy_dir / "base")}]}
        write_pool(out_dir / BASE_POOL, "The toy base alone, scored beside its adapters.", base_only)

    return cached_build(out_dir, toy_dir, recipe, run, force)
