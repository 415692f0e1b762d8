"""Toy pools for the replications (recycle, adapters, transfer), grown from the toy pool.

Each replication pool is a recipe of checkpoints derived from the toy pool's models (or from each other)
by training stages, plus a pool file. A build is cached by a fingerprint of its recipe and of the
toy pool it starts from, like ``mergefront toy build``. Training never sees an evaluation prompt of
the toy tasks (``experiments/tasks/toy``), which the replications score on.

Imports: ``toy`` and ``evaluators``; never ``optimizer``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from transformers import LlamaForCausalLM, PreTrainedModel

from evaluators.core.errors import ConfigError
from toy.build import MANIFEST, TOY_SKILLS, ToyRecipe, held_out_prompts, new_model, save_model
from toy.tokenizer import build_tokenizer
from toy.train import CharEncoder, Stage, reproducible_cpu, train_stage

log = logging.getLogger(__name__)

TOY = ToyRecipe()  # the toy pool that `make toy` builds; the replication pools grow from it
INIT = "init"  # parent: the toy base's initialisation, before any training
TOY_PREFIX = "toy:"  # parent: a model directory of the toy pool, e.g. "toy:base"
POOL_FILE = "checkpoints.yaml"


def uniform_mixture() -> dict[str, float]:
    """Every skill of the toy pool at weight 1: the mixture the toy base trains on."""
    return dict.fromkeys(TOY_SKILLS, 1.0)


@dataclass(frozen=True)
class Derived:
    """A checkpoint trained from ``parent`` through ``stages``; ``until`` stops the last stage early."""

    parent: str  # INIT, "toy:<dir>", or an entry built earlier in the same recipe
    stages: tuple[Stage, ...]
    seed: int
    until: int | None = None


class Trainer:
    """Loads, trains and saves toy models with the toy tokenizer, holding out every evaluation prompt."""

    def __init__(self, toy_dir: Path, out_dir: Path) -> None:
        self.toy_dir, self.out_dir = toy_dir, out_dir
        self.tokenizer = build_tokenizer()
        self.encoder = CharEncoder(self.tokenizer.get_vocab(), self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        self.held_out = held_out_prompts(TOY.seed, TOY.eval_examples)

    def load(self, parent: str) -> LlamaForCausalLM:
        """The model ``parent`` names: the toy base's initialisation (INIT), a toy pool directory (``toy:<dir>``), or a
        checkpoint built earlier into ``out_dir``."""
        if parent == INIT:
            return new_model(TOY.shape, self.tokenizer, TOY.seed)
        directory = (
            self.toy_dir / parent.removeprefix(TOY_PREFIX) if parent.startswith(TOY_PREFIX) else self.out_dir / parent
        )
        return LlamaForCausalLM.from_pretrained(directory)

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
        model = self.train(copy.deepcopy(self.load(spec.parent)), spec.stages, spec.seed, spec.until)
        save_model(model, self.tokenizer, self.out_dir / name)
        return self.out_dir / name

    def rel(self, path: Path) -> str:
        """``path`` relative to the pool file, which is how pool files name directories."""
        return os.path.relpath(path, self.out_dir)


def toy_fingerprint(toy_dir: Path) -> str:
    """The toy pool's recipe fingerprint from its manifest; ConfigError when the pool is missing or was built from
    another recipe than the default (the replication pools assume the default)."""
    manifest = toy_dir / MANIFEST
    if not manifest.is_file():
        raise ConfigError(
            f"{toy_dir}: no toy pool there; run `make toy` (or `mergefront toy build --out {toy_dir}`) first"
        )
    fingerprint = json.loads(manifest.read_text()).get("fingerprint")
    if fingerprint != TOY.fingerprint():
        raise ConfigError(
            f"{toy_dir}: toy pool recipe {fingerprint} is not the default {TOY.fingerprint()}; rebuild it with `make toy`"
        )
    return fingerprint


def cached_build(
    out_dir: Path, toy_dir: Path, recipe: Any, build: Callable[[Trainer], None], force: bool = False
) -> bool:
    """Run ``build`` into ``out_dir`` unless a build of the same recipe on the same toy pool is there.

    Returns False when the cached build was kept. The manifest is written last, so an interrupted
    build is never taken for a finished one.
    """
    toy = toy_fingerprint(toy_dir)
    fingerprint = hashlib.sha256(
        json.dumps({"recipe": asdict(recipe), "toy": toy}, sort_keys=True).encode()
    ).hexdigest()[:16]
    manifest = out_dir / MANIFEST
    if not force and manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") == fingerprint:
        return False
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    with reproducible_cpu():
        build(Trainer(toy_dir, out_dir))
    manifest.write_text(json.dumps({"fingerprint": fingerprint, "recipe": asdict(recipe)}, indent=2))
    return True


def write_pool(path: Path, header: str, pool: dict[str, Any]) -> None:
    """A pool file: ``header`` as comment lines, then the pool as YAML (keys in the given order)."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comments + yaml.safe_dump(pool, sort_keys=False))
