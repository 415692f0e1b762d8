"""The transfer pool (Lin et al., 2025): one fine-tuning diff applied to two other versions of its base.

- version 1 is the toy base; its fine-tune is the toy pool's ``add`` specialist;
- version 2 is version 1 trained further on more data (the same mixture), then fine-tuned directly
  with version 1's fine-tuning recipe, for comparison;
- version 0 is an early checkpoint of version 1's own training run (same initialisation, data and
  schedule, stopped early): far from version 1, as a distant early checkpoint is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toy.replications import (
    INIT,
    POOL_FILE,
    TOY,
    TOY_PREFIX,
    Derived,
    Trainer,
    cached_build,
    uniform_mixture,
    write_pool,
)
from toy.train import Stage

SEARCH_POOL = "search.yaml"  # version 2 plus the diff alone, for the search over λ


@dataclass(frozen=True)
class TransferRecipe:
    """The transfer pool's recipe: which toy specialist is version 1's fine-tune, how version 2 trains on from the
    toy base, and where version 0 stops (see the module docstring)."""

    finetune: str = "add"  # version 1's fine-tune: this toy pool member (version 1 is the toy base)
    v2_stage: Stage = field(default_factory=lambda: Stage(uniform_mixture(), steps=400, lr=1e-3))
    v2_seed: int = 301
    v0_steps: int = 100  # version 0: version 1's 400-step training run stopped after this many steps

    def derived(self) -> dict[str, Derived]:
        """The checkpoints to train: v0, v2, and v2's own fine-tune (with the same stage and seed as v1's), the
        transfer's reference."""
        ft_seed = TOY.seed + 1 + list(TOY.members).index(self.finetune)  # the seed the toy build gave it
        return {
            "v0": Derived(INIT, (TOY.base,), seed=TOY.seed, until=self.v0_steps),
            "v2": Derived(TOY_PREFIX + "base", (self.v2_stage,), seed=self.v2_seed),
            "v2_ft": Derived("v2", (TOY.members[self.finetune],), seed=ft_seed),
        }


def build(out_dir: Path, toy_dir: Path, recipe: TransferRecipe = TransferRecipe(), force: bool = False) -> bool:
    """Train version 0, version 2 and its direct fine-tune; write the pool files."""

    def run(trainer: Trainer) -> None:
        for name, spec in recipe.derived().items():
            trainer.derive(name, spec)
        v1, v1_ft = trainer.rel(toy_dir / "base"), trainer.rel(toy_dir / recipe.finetune)

        def diff_onto(target: str) -> dict[str, str]:
            return {
                "name": f"{target}_plus_diff",
                "kind": "transfer",
                "source_finetune": v1_ft,
                "source_base": v1,
                "target_base": target,
            }

        pool = {
            "name": "transfer",
            "bases": {"v0": {"path": "v0"}, "v1": {"path": v1}, "v2": {"path": "v2"}},
            "base": "v2",
            "members": [
                diff_onto("v2"),
                diff_onto("v0"),
                {"name": "v2_ft", "path": "v2_ft"},
                {"name": "v1_ft", "path": v1_ft},
                *({"name": v, "kind": "base", "base": v} for v in ("v2", "v1", "v0")),
            ],
        }
        write_pool(out_dir / POOL_FILE, "The transfer pool, written by `python -m toy.replications transfer`.", pool)
        search = {"name": "transfer-search", "bases": {"v2": {"path": "v2"}}, "members": [diff_onto("v2")]}
        write_pool(
            out_dir / SEARCH_POOL, "Version 2 plus version 1's diff: task arithmetic on base v2 searches λ.", search
        )

    return cached_build(out_dir, toy_dir, recipe, run, force)
