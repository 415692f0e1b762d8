"""The recycling pool (Khalifa et al., 2024): checkpoints of several training runs continued from one base.

A base learns six skills of graded difficulty (copy and shift are easy, sort and reverse harder; add it
learns to about 0.85 and sub to 0.2, so neither saturates). Nine runs continue from it with other data mixtures,
stages, learning rates and seeds; each is checkpointed mid-run, 120 steps into a 400-step schedule,
while its learning rate is still near its peak, so each checkpoint carries the SGD noise of its
learning rate. One run uses a low learning rate (1e-3, little noise); eight use a high one (3e-3),
each tilted towards other skills. Averaging removes noise, so merges beat every checkpoint; the best
weights follow each checkpoint's noise (more on the quiet one, a little on each noisy one), which
neither the uniform soup nor the greedy soup can express.

The model is the toy shape at half width (64), so the base trains in about a minute on one thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toy.build import ModelShape, new_model, save_model
from toy.replications import POOL_FILE, Derived, Trainer, cached_build, write_pool
from toy.train import Stage

SKILLS = ("copy", "shift", "sort", "reverse", "add", "sub")  # easiest first; the experiments' objectives
MIXTURE = {"copy": 0.5, "shift": 0.5, "sort": 1.0, "reverse": 1.0, "add": 2.0, "sub": 2.0}  # more data where harder
FRESH = "fresh"  # the initialisation the base trains from, saved into the pool directory (toy.replications.INIT
# would give the toy shape)
PLANNED, KEPT = 400, 120  # each run's schedule, and the step its checkpoint is taken at
LOW_LR, HIGH_LR = 1e-3, 3e-3
HALF_WIDTH = ModelShape(hidden_size=64, intermediate_size=128, heads=1)  # the toy shape at half width


def tilt(share: dict[str, float]) -> dict[str, float]:
    """The base mixture with ``share`` (skill -> fraction of the data) fixed and the rest scaled to fill it."""
    rest = sum(w for s, w in MIXTURE.items() if s not in share)
    scale = (1.0 - sum(share.values())) / rest
    return {s: share.get(s, w * scale) for s, w in MIXTURE.items()}


def _run(share: dict[str, float], lr: float, seed: int) -> Derived:
    """A run continued from the base with this mixture tilt, checkpointed mid-run at step ``KEPT``."""
    return Derived("base", (Stage(tilt(share), steps=PLANNED, lr=lr, batch_size=32),), seed=seed, until=KEPT)


def _members() -> dict[str, Derived]:
    two_stage = (
        Stage(tilt({"add": 0.5}), steps=KEPT // 2, lr=HIGH_LR, batch_size=32),  # a full short stage on add
        Stage(tilt({"sub": 0.5}), steps=PLANNED, lr=HIGH_LR, batch_size=32),  # then sub, checkpointed mid-run
    )
    return {
        "low_lr": _run({}, LOW_LR, seed=1),
        "copy": _run({"copy": 0.3}, HIGH_LR, seed=10),
        "shift": _run({"shift": 0.3}, HIGH_LR, seed=11),
        "sort": _run({"sort": 0.3}, HIGH_LR, seed=12),
        "reverse": _run({"reverse": 0.3}, HIGH_LR, seed=13),
        "add": _run({"add": 0.5}, HIGH_LR, seed=14),
        "sub": _run({"sub": 0.5}, HIGH_LR, seed=15),
        "mixed": _run({}, HIGH_LR, seed=16),
        "add_then_sub": Derived("base", two_stage, seed=30, until=KEPT // 2),
    }


@dataclass(frozen=True)
class RecycleRecipe:
    """The recycling pool: the model shape and initialisation, the base's training, and each checkpoint's run."""

    shape: ModelShape = HALF_WIDTH
    init_seed: int = 0
    # lr 1e-3: at 3e-3 the base learned add and sub for some seeds only (0.67 in one build, 0.11/0.10 in another)
    base: Derived = field(default_factory=lambda: Derived(FRESH, (Stage(MIXTURE, steps=2000, lr=1e-3),), seed=0))
    members: dict[str, Derived] = field(default_factory=_members)


def build(out_dir: Path, recipe: RecycleRecipe = RecycleRecipe(), force: bool = False) -> bool:
    """Train the base and the checkpoints and write the pool file; False when the cached build is current."""

    def run(trainer: Trainer) -> None:
        save_model(new_model(recipe.shape, trainer.tokenizer, recipe.init_seed), trainer.tokenizer, out_dir / FRESH)
        trainer.derive("base", recipe.base)
        for name, spec in recipe.members.items():
            trainer.derive(name, spec)
        pool = {
            "name": "recycle",
            "bases": {"base": {"path": "base"}},
            "members": [{"name": name, "path": name} for name in recipe.members],
        }
        write_pool(out_dir / POOL_FILE, "The recycling pool, written by `python -m toy.replications recycle`.", pool)

    return cached_build(out_dir, recipe, run, force)
