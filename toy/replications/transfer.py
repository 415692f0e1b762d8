"""The transfer pool (Lin et al., 2025): one fine-tuning diff carried to a newer version of its base and to a
distant model.

- v1 is trained from a fresh initialisation on four skills (``KNOWN``); it never sees ``reverse``;
- v1_ft is v1 fine-tuned on ``reverse`` with a quarter of the data, the rest v1's own mixture, so the
  fine-tune adds the skill without wrecking the others;
- v2 is v1 trained further on more data of the same mixture at a sixth of v1's learning rate: a newer
  version in the same basin (it does not know ``reverse`` either);
- distant is v1's recipe from another initialisation: as good as v1, but in another basin;
- two fine-tuning runs with v1's fine-tuning recipe (stage and data order): from v2 (``v2_ft``, the
  direct fine-tune the transfer is measured against) and from v2 + v1's diff, each saving a checkpoint
  every ``every`` steps (``steps/direct/NNN``, ``steps/transfer/NNN``) to count how many steps each
  needs (the paper's "recycling then fine-tuning").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from toy.build import focus, save_model
from toy.replications import INIT, POOL_FILE, Derived, Trainer, cached_build, write_pool
from toy.train import Stage, train_stage

log = logging.getLogger(__name__)

KNOWN = ("sort", "shift", "copy", "max")  # what every base learns
TARGET = "reverse"  # what the fine-tune teaches: a skill no base knows
SEARCH_POOL = "search.yaml"  # version 2 plus the diff alone, for the search over λ
STEPS_POOL = "steps.yaml"  # the checkpoints of the two fine-tuning runs
STEPS_DIR = "steps"
RUNS = ("direct", "transfer")  # fine-tuning from v2, and from v2 + v1's diff


@dataclass(frozen=True)
class TransferRecipe:
    """The transfer pool's recipe (module docstring): the skills, each training stage, the seeds, and how often the
    two fine-tuning runs save a checkpoint."""

    known: tuple[str, ...] = KNOWN
    target: str = TARGET
    v1: Stage = field(default_factory=lambda: Stage(dict.fromkeys(KNOWN, 1.0), steps=600, lr=3e-3))
    finetune: Stage = field(default_factory=lambda: Stage(focus(TARGET, 0.25, (*KNOWN, TARGET)), steps=300, lr=5e-4))
    v2: Stage = field(default_factory=lambda: Stage(dict.fromkeys(KNOWN, 1.0), steps=400, lr=5e-4))
    v1_seed: int = 0  # v1's initialisation and data order
    distant_init_seed: int = 1  # distant: another initialisation, the same data order
    finetune_seed: int = 11  # one data order for every fine-tune
    v2_seed: int = 21
    every: int = 25  # a checkpoint every this many fine-tuning steps

    def derived(self) -> dict[str, Derived]:
        """The checkpoints trained before the fine-tuning runs, in build order."""
        return {
            "v1": Derived(INIT, (self.v1,), seed=self.v1_seed, init_seed=self.v1_seed),
            "v1_ft": Derived("v1", (self.finetune,), seed=self.finetune_seed),
            "v2": Derived("v1", (self.v2,), seed=self.v2_seed),
            "distant": Derived(INIT, (self.v1,), seed=self.v1_seed, init_seed=self.distant_init_seed),
        }

    def checkpoint_steps(self) -> list[int]:
        """The steps at which each fine-tuning run is saved: 0 (its start), every ``every`` steps, and its end."""
        return sorted({0, *range(self.every, self.finetune.steps, self.every), self.finetune.steps})


def step_dir(run: str, step: int) -> str:
    """Where a fine-tuning run's checkpoint after ``step`` steps lies, relative to the pool folder."""
    return f"{STEPS_DIR}/{run}/{step:03d}"


def with_diff(target: PreTrainedModel, finetune: PreTrainedModel, base: PreTrainedModel) -> PreTrainedModel:
    """``target`` + (``finetune`` − ``base``), in place: the transfer member's weights, to fine-tune from."""
    fine, old = finetune.state_dict(), base.state_dict()
    with torch.no_grad():
        for name, value in target.state_dict().items():
            value.add_(fine[name] - old[name])
    return target


def finetune_saving(trainer: Trainer, model: PreTrainedModel, recipe: TransferRecipe, run: str) -> None:
    """Fine-tune ``model`` with v1's recipe, saving it at each of ``recipe.checkpoint_steps()``."""
    steps = set(recipe.checkpoint_steps())
    log.info("fine-tuning run %s (%d steps, a checkpoint every %d)", run, recipe.finetune.steps, recipe.every)

    def save(step: int) -> None:
        if step in steps:
            save_model(model, trainer.tokenizer, trainer.out_dir / step_dir(run, step))

    save(0)
    train_stage(model, trainer.encoder, recipe.finetune, recipe.finetune_seed, trainer.held_out, after_step=save)


def _onto(target: str) -> dict[str, str]:
    """The transfer member that carries v1's diff onto the base named ``target``."""
    return {
        "name": f"{target}_plus_diff",
        "kind": "transfer",
        "source_finetune": "v1_ft",
        "source_base": "v1",
        "target_base": target,
    }


def pools(recipe: TransferRecipe) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each pool file's name -> (its header, its content)."""
    bases = ("v1", "v2", "distant")
    main = {
        "name": "transfer",
        "bases": {b: {"path": b} for b in bases},
        "base": "v2",
        "members": [
            _onto("v2"),
            _onto("distant"),
            {"name": "v1_ft", "path": "v1_ft"},
            {"name": "v2_ft", "path": step_dir("direct", recipe.finetune.steps)},
            *({"name": b, "kind": "base", "base": b} for b in bases),
        ],
    }
    search = {"name": "transfer-search", "bases": {"v2": {"path": "v2"}}, "members": [_onto("v2")]}
    steps = {
        "name": "transfer-steps",
        "members": [
            {"name": f"{run}_{step:03d}", "path": step_dir(run, step)}
            for run in RUNS
            for step in recipe.checkpoint_steps()
        ],
    }
    return {
        POOL_FILE: ("The transfer pool, written by `python -m toy.replications transfer`.", main),
        SEARCH_POOL: ("Version 2 plus version 1's diff: task arithmetic on base v2 searches λ.", search),
        STEPS_POOL: ("Checkpoints of fine-tuning from v2 (direct) and from v2 + v1's diff (transfer).", steps),
    }


def build(out_dir: Path, recipe: TransferRecipe = TransferRecipe(), force: bool = False) -> bool:
    """Train the bases, v1's fine-tune and the two fine-tuning runs; write the pool files. False when the cached
    build is current."""

    def run(trainer: Trainer) -> None:
        for name, spec in recipe.derived().items():
            trainer.derive(name, spec)
        finetune_saving(trainer, trainer.load("v2"), recipe, "direct")
        transferred = with_diff(trainer.load("v2"), trainer.load("v1_ft"), trainer.load("v1"))
        finetune_saving(trainer, transferred, recipe, "transfer")
        for file, (header, pool) in pools(recipe).items():
            write_pool(out_dir / file, header, pool)

    return cached_build(out_dir, recipe, run, force)
