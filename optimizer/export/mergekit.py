"""The mergekit recipe of a merge, written only where mergekit computes the same tensors.

Only ``linear``, ``task_arithmetic`` and ``slerp`` over members that are plain model directories qualify, and
only when mergekit can load them as mergefront merges them:
- one checkpoint under two member names is one mergekit input with the summed weight (mergekit
  refuses duplicate inputs); a member that is the base itself adds nothing to a task-vector merge;
- members whose vocabularies differ are zero-padded by mergefront, which mergekit does not do;
- mergekit's ``dtype`` is its compute dtype: the recipe computes in float32 (as mergefront does) and
  writes ``out_dtype``, the pool's dtype, which must then be the same for every tensor.
mergekit's TIES and DARE (its top-k and sign-election tie-breaking, its random masks) differ from
ours in 0.2-1.4 % of elements, so they get no recipe; nor do transfer and LoRA members or weight
groups. The card says why when there is none.

The recipe names models as the pool file does (relative paths, repo ids), never by this machine's
absolute paths; a comment at its top says from which folder mergekit resolves the relative ones.
A relative path is written ``./PATH``: mergekit takes a name that could be a repo id (``add``,
``org/name``) for one and asks the hub about it, even when such a folder exists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from evaluators.core.paths import folder_of, spelling
from evaluators.merge import MergeSpec
from evaluators.merge.task_arithmetic import LAMBDA
from evaluators.pool.config import BaseMember, CheckpointMember, FinetuneMember
from evaluators.pool.plan import PoolPlan

EXPRESSIBLE = ("linear", "task_arithmetic", "slerp")


def _inputs(plan: PoolPlan, weights: Mapping[str, float], base: Path | None) -> dict[Path, float] | str:
    """mergekit's model inputs: each directory once, with the summed weight of the members that are it;
    or why there can be none."""
    pool = plan.pool
    inputs: dict[Path, float] = {}
    for m in pool.members:
        if isinstance(m, CheckpointMember | FinetuneMember):
            path = m.path
        elif isinstance(m, BaseMember):
            path = pool.bases[m.base].path
        else:
            return f"member '{m.name}' is a {m.kind} member, which mergekit cannot load as a model directory"
        if weights[m.name] != 0.0 and path != base:  # validated paths are resolved: one directory, one key
            inputs[path] = inputs.get(path, 0.0) + float(weights[m.name])
    return inputs


def _named(path: Path) -> str:
    """How the recipe names a model: as the pool file does, a relative path marked as one (``./PATH``)."""
    spelled = spelling(path)
    return spelled if folder_of(path) is None or spelled.startswith(".") else f"./{spelled}"


def _where(models: list[Path], out: Path) -> str:
    """The recipe's opening comment: from which folder mergekit finds the relative model paths."""
    folders = sorted({str(f) for f in map(folder_of, models) if f is not None})
    if not folders:
        return ""
    here = ", ".join(os.path.relpath(f, os.path.abspath(out)) for f in folders)
    return (
        f"# Models as the pool file names them; relative paths are relative to its folder, {here} from this\n"
        "# directory: run mergekit-yaml there.\n"
    )


def mergekit_recipe(
    plan: PoolPlan,
    spec: MergeSpec,
    weights: Mapping[str, float],
    knobs: Mapping[str, float],
    grouped: bool,
    out: Path,
) -> tuple[str | None, str]:
    """(YAML text or None, a sentence on why there is or is not one), for a recipe written into ``out``."""
    if spec.method not in EXPRESSIBLE:
        return None, (
            f"mergekit computes method '{spec.method}' differently (top-k and sign-election ties, random masks: "
            "0.2-1.4 % of elements differ), so no recipe is written"
        )
    if grouped:
        return None, "per-group weights (weight groups) have no exact mergekit equivalent"
    vocabularies = sorted({s.vocab for s in plan.sources})
    if len(vocabularies) > 1:
        return (
            None,
            f"the members' vocabularies differ ({', '.join(map(str, vocabularies))} rows); mergefront zero-pads the smaller ones, mergekit does not",
        )
    dtypes = sorted({info.dtype for info in plan.tensors.values() if info.dtype.startswith(("float", "bfloat"))})
    if len(dtypes) > 1:
        return (
            None,
            f"the pool stores tensors in several dtypes ({', '.join(dtypes)}); mergekit writes one out_dtype for all",
        )
    base = (
        plan.pool.bases[plan.pool.merge_base].path
        if spec.method == "task_arithmetic" and plan.pool.merge_base
        else None
    )
    inputs = _inputs(plan, weights, base)
    if isinstance(inputs, str):
        return None, inputs
    if spec.method == "slerp":
        recipe = _slerp(list(inputs), float(knobs.get("t", spec.value("t"))), dtypes[0])
    else:
        recipe = _weighted(spec, inputs, base, knobs, dtypes[0])
    if isinstance(recipe, str):
        return None, recipe
    text = _where([*inputs, *([base] if base is not None else [])], out) + yaml.safe_dump(recipe, sort_keys=False)
    return text, "the same merge as a mergekit recipe (`mergekit-yaml mergekit.yaml OUT`)"


def _weighted(
    spec: MergeSpec, inputs: dict[Path, float], base: Path | None, knobs: Mapping[str, float], out_dtype: str
) -> dict[str, object]:
    """mergekit's linear merge, or its task arithmetic over ``base``."""
    recipe: dict[str, object] = {
        "merge_method": spec.method,
        "models": [{"model": _named(path), "parameters": {"weight": w}} for path, w in inputs.items()],
        "dtype": "float32",
        "out_dtype": out_dtype,
    }
    if base is None:
        recipe["parameters"] = {"normalize": False}
    else:
        recipe["base_model"] = _named(base)
        recipe["parameters"] = {"normalize": False, LAMBDA.name: float(knobs.get(LAMBDA.key, spec.value(LAMBDA)))}
    return recipe


def _slerp(inputs: list[Path], t: float, out_dtype: str) -> dict[str, object] | str:
    """mergekit's SLERP from its base_model (our first weighted member, t = 0) to the other input."""
    if len(inputs) != 2:
        return (
            f"the merge interpolates {len(inputs)} distinct model director{'y' if len(inputs) == 1 else 'ies'}; "
            "mergekit's slerp needs two"
        )
    return {
        "merge_method": "slerp",
        "base_model": _named(inputs[0]),
        "models": [{"model": _named(path)} for path in inputs],
        "parameters": {"t": t},
        "dtype": "float32",
        "out_dtype": out_dtype,
    }
