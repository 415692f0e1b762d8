"""The recycling pool (Khalifa et al., 2024): checkpoints from different training runs of one base.

The toy pool's four specialists are reused as they are; four more checkpoints come from the same
base through other data mixtures, stage sequences and learning rates, so the pool trades the four
skills off in more than one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toy.build import focus
from toy.replications import POOL_FILE, TOY_PREFIX, Derived, Trainer, cached_build, uniform_mixture, write_pool
from toy.train import Stage


def _derived() -> dict[str, Derived]:
    base = TOY_PREFIX + "base"
    return {
        # more general training at a low learning rate: a "continued pre-training" checkpoint
        "general": Derived(base, (Stage(uniform_mixture(), steps=500, lr=1e-3),), seed=101),
        # another mixture: two skills at once
        "add_sort": Derived(
            base, (Stage({"add": 0.45, "sort": 0.45, "reverse": 0.05, "shift": 0.05}, steps=400, lr=2e-3),), seed=102
        ),
        # two stages: shift first, then reverse
        "shift_then_reverse": Derived(
            base,
            (Stage(focus("shift", 0.9), steps=250, lr=3e-3), Stage(focus("reverse", 0.9), steps=250, lr=1e-3)),
            seed=103,
        ),
        # another hyperparameter setting: a milder add mixture at a quarter of the learning rate
        "add_slow": Derived(base, (Stage(focus("add", 0.7), steps=400, lr=7.5e-4),), seed=104),
    }


@dataclass(frozen=True)
class RecycleRecipe:
    """The recycling pool: toy pool members as they are, plus checkpoints derived from the toy models by other
    mixtures, stage orders and hyperparameters."""

    reused: tuple[str, ...] = ("add", "reverse", "sort", "shift")  # toy pool members, as they are
    derived: dict[str, Derived] = field(default_factory=_derived)


def build(out_dir: Path, toy_dir: Path, recipe: RecycleRecipe = RecycleRecipe(), force: bool = False) -> bool:
    """Train the derived checkpoints and write the pool file; False when the cached build is current."""

    def run(trainer: Trainer) -> None:
        members = [{"name": name, "path": trainer.rel(toy_dir / name)} for name in recipe.reused]
        members += [
            {"name": name, "path": trainer.rel(trainer.derive(name, spec))} for name, spec in recipe.derived.items()
        ]
        pool = {"name": "recycle", "bases": {"toy-base": {"path": trainer.rel(toy_dir / "base")}}, "members": members}
        write_pool(out_dir / POOL_FILE, "The recycling pool, written by `python -m toy.replications recycle`.", pool)

    return cached_build(out_dir, toy_dir, recipe, run, force)
