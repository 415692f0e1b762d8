"""``export --as-adapter``: the merge of an all-LoRA pool written as one PEFT adapter on their base.

A ``linear`` merge with weights summing to 1 is base + Σ w_i s_i B_i A_i, which is exactly one
adapter of rank Σ r_i: A stacks the A_i, B concatenates the w_i s_i B_i (lora_alpha = r, so
PEFT's scale is 1). ``lora_factorwise`` is base + s (Σ w_i B_i)(Σ w_i A_i): rank r, scale s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from evaluators.errors import ConfigError
from evaluators.merge import MergeSpec
from evaluators.pool import LoraMember
from evaluators.pool.adapters import CONFIG, PREFIX, WEIGHTS, LowRank
from evaluators.pool.plan import PoolPlan

METHODS = ("linear", "lora_factorwise")


def _factors(method: str, w: list[float], factors: list[LowRank]) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of the merged adapter for one tensor, with the scale folded into B."""
    if method == "linear":
        return torch.cat([f.a.float() for f in factors]), torch.cat([wi * f.scale * f.b.float() for wi, f in zip(w, factors, strict=True)], dim=1)
    a = sum(wi * f.a.float() for wi, f in zip(w, factors, strict=True))
    b = sum(wi * f.b.float() for wi, f in zip(w, factors, strict=True))
    return a, factors[0].scale * b  # type: ignore[return-value,operator]


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
        raise ConfigError(f"the weights sum to {sum(w):.6f}, so the merge scales the base too and is no adapter on it; export a full model instead")
    tensors: dict[str, torch.Tensor] = {}
    ranks = set()
    for key in plan.tensors:
        factors = plan.lowrank(key)
        if all(f is None for f in factors):
            continue
        if any(f is None for f in factors):
            raise ConfigError(f"tensor '{key}' is adapted by some members only, which one adapter cannot express; export a full model instead")
        a, b = _factors(spec.method, w, factors)  # type: ignore[arg-type]
        stem = PREFIX + key.removesuffix(".weight")
        dtype = factors[0].a.dtype  # type: ignore[union-attr]
        tensors[f"{stem}.lora_A.weight"] = a.to(dtype).contiguous()
        tensors[f"{stem}.lora_B.weight"] = b.to(dtype).contiguous()
        ranks.add(a.shape[0])
    if len(ranks) != 1:
        raise ConfigError(f"the merged adapter would have ranks {sorted(ranks)} on different tensors; export a full model instead")
    rank = ranks.pop()
    first = members[0]
    config = json.loads((first.path / CONFIG).read_text())  # type: ignore[union-attr]
    config.update(r=rank, lora_alpha=rank, use_rslora=False, base_model_name_or_path=str(pool.bases[first.base].path))  # type: ignore[union-attr]
    out.mkdir(parents=True)
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(json.dumps(config, indent=2))
