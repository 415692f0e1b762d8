"""``export --as-adapter``: the merge of an all-LoRA pool written as one PEFT adapter on their base.

A ``linear`` merge with weights summing to 1 is base + Σ w_i s_i B_i A_i, which is exactly one
adapter of rank Σ r_i per module: A stacks the A_i, B concatenates the w_i s_i B_i.
``lora_factorwise`` is base + s (Σ w_i B_i)(Σ w_i A_i): the module's rank r, with s folded into B.
Every scale is in the factors, so the config gives every module lora_alpha == r (peft's scale
α/r is then exactly 1, ``LoraLayer.update_layer``), through rank_pattern and alpha_pattern where
modules' ranks differ. Conv1D modules (GPT-2) get their factors back in peft's layout.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from evaluators.core.errors import ConfigError
from evaluators.core.paths import spelling
from evaluators.merge import MergeSpec
from evaluators.pool import LoraMember
from evaluators.pool.adapters import CONFIG, PREFIX, WEIGHTS, LowRank
from evaluators.pool.plan import PoolPlan

METHODS = ("linear", "lora_factorwise")


def _factors(method: str, w: list[float], factors: list[LowRank]) -> tuple[torch.Tensor, torch.Tensor]:
    """(right, left) of the merged delta left @ right for one tensor, in W's layout, with the scale folded into left."""
    if method == "linear":
        return torch.cat([f.a.float() for f in factors]), torch.cat(
            [wi * f.scale * f.b.float() for wi, f in zip(w, factors, strict=True)], dim=1
        )
    a = sum(wi * f.a.float() for wi, f in zip(w, factors, strict=True))
    b = sum(wi * f.b.float() for wi, f in zip(w, factors, strict=True))
    return a, factors[0].scale * b  # type: ignore[return-value]


def _config(template: dict[str, Any], ranks: dict[str, int], conv1d: bool, base: Path) -> dict[str, Any]:
    """The first member's config with every module's α equal to its rank (scale 1): the most common rank is r,
    the others exact-name rank_pattern entries (peft matches keys as ``(.*\\.)?(key)$``) with equal alpha_pattern."""
    r = Counter(ranks.values()).most_common(1)[0][0]
    others = {re.escape(module): rank for module, rank in ranks.items() if rank != r}
    return {
        **template,
        "r": r,
        "lora_alpha": r,
        "use_rslora": False,
        "rank_pattern": others,
        "alpha_pattern": dict(others),
        "target_modules": sorted(ranks),
        "fan_in_fan_out": conv1d,
        "base_model_name_or_path": spelling(base),  # as the pool file names it: a repo id, or a path
    }


def write_adapter(plan: PoolPlan, spec: MergeSpec, weights: Mapping[str, float], grouped: bool, out: Path) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` for the merge into ``out``."""
    pool = plan.pool
    members = pool.members
    if not all(isinstance(m, LoraMember) for m in members):
        raise ConfigError("--as-adapter needs a pool of LoRA members only; export a full model instead")
    bases = {m.base for m in members}  # type: ignore[union-attr]
    if len(bases) > 1 or spec.method not in METHODS or grouped:
        raise ConfigError(
            f"--as-adapter writes linear or lora_factorwise merges of adapters on one base without weight groups; "
            f"this run uses {spec.method} on bases {sorted(bases)}{' with groups' if grouped else ''}: export a full model instead"
        )
    w = [float(weights[m.name]) for m in members]
    if not math.isclose(sum(w), 1.0, abs_tol=1e-6):
        raise ConfigError(
            f"the weights sum to {sum(w):.6f}, so the merge scales the base too and is no adapter on it; export a full model instead"
        )
    transposed = frozenset().union(*(adapter.transposed for adapter in plan.adapters.values()))
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for key in plan.tensors:
        factors = plan.lowrank(key)
        if all(f is None for f in factors):
            continue
        if any(f is None for f in factors):
            raise ConfigError(
                f"tensor '{key}' is adapted by some members only, which one adapter cannot express; export a full model instead"
            )
        right, left = _factors(spec.method, w, factors)  # type: ignore[arg-type]
        name = plan.slots[key].name  # the live name, which peft's module names follow
        lora_a, lora_b = (left.T, right.T) if name in transposed else (right, left)  # a Conv1D's delta is (B @ A)ᵀ
        module, dtype = name.removesuffix(".weight"), factors[0].a.dtype  # type: ignore[union-attr]
        tensors[f"{PREFIX}{module}.lora_A.weight"] = lora_a.to(dtype).contiguous()
        tensors[f"{PREFIX}{module}.lora_B.weight"] = lora_b.to(dtype).contiguous()
        ranks[module] = lora_a.shape[0]
    first = members[0]
    template = json.loads((first.path / CONFIG).read_text())  # type: ignore[union-attr]
    config = _config(template, ranks, bool(transposed), pool.bases[first.base].path)  # type: ignore[union-attr]
    out.mkdir(parents=True)
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(json.dumps(config, indent=2))
