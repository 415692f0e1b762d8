"""The mergekit recipe of a merge, where mergekit computes the same tensors.

Only ``linear`` and ``task_arithmetic`` over members that are plain model directories qualify:
mergekit's TIES weighting and DARE's random masks differ from ours, and it has no notion of
our transfer members or per-group weight regexes. Anything else gets no recipe, and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from evaluators.merge import MergeSpec
from evaluators.pool import Pool
from evaluators.pool.config import BaseMember, CheckpointMember, FinetuneMember

EXPRESSIBLE = ("linear", "task_arithmetic")


def _member_path(pool: Pool, member: object) -> Path | None:
    if isinstance(member, CheckpointMember | FinetuneMember):
        return member.path
    if isinstance(member, BaseMember):
        return pool.bases[member.base].path
    return None


def mergekit_recipe(
    pool: Pool, spec: MergeSpec, weights: Mapping[str, float], knobs: Mapping[str, float], grouped: bool, dtype: str
) -> tuple[str | None, str]:
    """(YAML text or None, a sentence on why there is or is not one)."""
    if spec.method not in EXPRESSIBLE:
        return None, f"mergekit has no exact equivalent of method '{spec.method}' as mergefront computes it"
    if grouped:
        return None, "per-group weights (weight groups) have no exact mergekit equivalent"
    paths = {m.name: _member_path(pool, m) for m in pool.members}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        return None, f"members {missing} are not plain model directories (transfer or LoRA), which mergekit cannot load as such"
    models = [{"model": str(paths[name]), "parameters": {"weight": float(weights[name])}} for name in paths if weights[name] != 0.0]
    recipe: dict[str, object] = {"merge_method": spec.method, "models": models, "dtype": dtype}
    if spec.method == "task_arithmetic":
        base = pool.merge_base
        assert base is not None  # task_arithmetic needs a base; the pool was checked when the run began
        recipe["base_model"] = str(pool.bases[base].path)
        recipe["parameters"] = {"normalize": False, "lambda": float(knobs.get("scale", spec.knob("scale")))}
    else:
        recipe["parameters"] = {"normalize": False}
    return yaml.safe_dump(recipe, sort_keys=False), "the same merge as a mergekit recipe (`mergekit-yaml mergekit.yaml OUT`)"
