"""Export: stream one merge into a Hugging Face model directory with a model card and a mergekit recipe.

Used by ``mergefront merge`` (weights given by hand) and, through ``optimizer.export.trial``, by
``mergefront export`` (a trial of a run). Kept free of pandas and Optuna: a one-off merge's wall
time is mostly imports.
The directory is written under a hidden ``.NAME.partial`` sibling and renamed at the end, so an
interrupted export leaves no half-written model where the user asked for one.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from evaluators.core.errors import ConfigError
from evaluators.merge import MergePoint, MergeSpec
from evaluators.merge.engine import stream_merge
from evaluators.pool.plan import PoolPlan
from optimizer.export.adapter import write_adapter
from optimizer.export.mergekit import mergekit_recipe
from optimizer.export.modelcard import Provenance, model_card

CARD = "README.md"
RECIPE = "mergekit.yaml"


def check_output(out: Path, force: bool) -> Path:
    """Refuse an existing ``out`` without ``force`` and a place that cannot be written; returns the partial path."""
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a model directory; choose another --out")
    partial = out.with_name(f".{out.name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        partial.rmdir()
    except OSError as exc:
        raise ConfigError(f"cannot write to {out.parent} ({exc.strerror}); choose a writable --out") from None
    return partial


@dataclass(frozen=True)
class Destination:
    """Where an export goes: ``path`` (replaced only with ``force``), as a model directory or, with
    ``as_adapter``, a PEFT adapter; ``progress``: a bar over the tensors while it is written."""

    path: Path
    force: bool = False
    as_adapter: bool = False
    progress: bool = True


def write_merge(
    plan: PoolPlan,
    spec: MergeSpec,
    point: MergePoint,
    weights: Mapping[str, float],
    provenance: Provenance,
    to: Destination,
    groups: Mapping[str, str] | None = None,
) -> Path:
    """Stream the merge of ``point`` over the planned pool to ``to`` with README.md and, where it is
    exact, mergekit.yaml; returns the written directory."""
    out = to.path
    partial = check_output(out, to.force)
    pool = plan.pool
    try:
        if to.as_adapter:
            write_adapter(plan, spec, weights, bool(groups), partial)
            recipe, note = (
                None,
                "not written for an adapter; load it with peft on the base named in adapter_config.json",
            )
        else:
            stream_merge(
                plan, spec, point, partial, groups, progress=to.progress
            )  # the workers' arithmetic: bit-equal to a CPU worker's merge
            recipe, note = mergekit_recipe(plan, spec, weights, point.knobs, bool(groups), out)
        (partial / CARD).write_text(model_card(pool, spec, weights, point.knobs, provenance, note))
        if recipe is not None:
            (partial / RECIPE).write_text(recipe)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out
