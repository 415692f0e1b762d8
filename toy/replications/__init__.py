"""Toy pools for the replications (recycle, adapters, transfer), each trained from scratch.

Each replication pool is a recipe of checkpoints trained from a fresh initialisation (``INIT``) or from
each other by training stages, plus a pool file. It shares the toy pool's tokenizer, model shape and
tasks, not its models, so changing the demo pool's recipe leaves the replications as they are. A build
is cached by a fingerprint of its recipe, like ``mergefront toy build``. Training runs on one thread
with deterministic kernels and never sees an evaluation prompt of the toy tasks
(``experiments/tasks/toy``), which the replications score on.

Imports: ``toy`` and ``evaluators``; never ``optimizer``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from transformers import LlamaForCausalLM, PreTrainedModel

from toy.build import MANIFEST, ToyRecipe, held_out_prompts, new_model, recipe_fingerprint, save_model
from toy.tokenizer import build_tokenizer
from toy.train import CharEncoder, Stage, reproducible_cpu, train_stage

log = logging.getLogger(__name__)

TOY = ToyRecipe()  # the toy pool's model shape and evaluation split; the replication pools share them
INIT = "init"  # parent: a fresh initialisation of the toy model shape (seeded by ``Derived.init_seed``)
POOL_FILE = "checkpoints.yaml"


@dataclass(frozen=True)
class Derived:
    """A checkpoint trained from ``parent`` through ``stages``; ``until`` stops the last stage early."""

    parent: str  # INIT or an entry built earlier in the same recipe
    stages: tuple[Stage, ...]
    seed: int
    until: int | None = None
    init_seed: int = 0  # with parent INIT: the initialisation's seed


class Trainer:
    """Loads, trains and saves toy models with the toy tokenizer, holding out every evaluation prompt."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.tokenizer = build_tokenizer()
        self.encoder = CharEncoder(self.tokenizer.get_vocab(), self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        self.held_out = held_out_prompts(TOY.seed, TOY.eval_examples)

    def load(self, parent: str, init_seed: int = 0) -> LlamaForCausalLM:
        """The model ``parent`` names: a fresh initialisation (INIT, seeded ``init_seed``) or a checkpoint built
        earlier into ``out_dir``."""
        if parent == INIT:
            return new_model(TOY.shape, self.tokenizer, init_seed)
        return LlamaForCausalLM.from_pretrained(self.out_dir / parent)

    def train(
        self, model: PreTrainedModel, stages: tuple[Stage, ...], seed: int, until: int | None = None
    ) -> PreTrainedModel:
        """Train ``model`` in place through ``stages`` (stage i seeded ``seed + i``)."""
        for i, stage in enumerate(stages):
            train_stage(
                model, self.encoder, stage, seed + i, self.held_out, until=until if i == len(stages) - 1 else None
            )
        return model

    def derive(self, name: str, spec: Derived) -> Path:
        """Build one derived checkpoint into ``out_dir/name``."""
        log.info("training %s from %s (%d steps)", name, spec.parent, sum(s.steps for s in spec.stages))
        model = self.train(self.load(spec.parent, spec.init_seed), spec.stages, spec.seed, spec.until)
        save_model(model, self.tokenizer, self.out_dir / name)
        return self.out_dir / name


def cached_build(out_dir: Path, recipe: Any, build: Callable[[Trainer], None], force: bool = False) -> bool:
    """Run ``build`` into ``out_dir`` unless a build of the same recipe (and training code) is there.

    Returns False when the cached build was kept. The manifest is written last, so an interrupted
    build is never taken for a finished one.
    """
    fingerprint = recipe_fingerprint(recipe, Path(build.__code__.co_filename))  # its builder's module too
    manifest = out_dir / MANIFEST
    if not force and manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") == fingerprint:
        return False
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    with reproducible_cpu():
        build(Trainer(out_dir))
    manifest.write_text(json.dumps({"fingerprint": fingerprint, "recipe": asdict(recipe)}, indent=2))
    return True


def write_pool(path: Path, header: str, pool: dict[str, Any]) -> None:
    """A pool file: ``header`` as comment lines, then the pool as YAML (keys in the given order)."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comments + yaml.safe_dump(pool, sort_keys=False))
