"""TIES: trim each task vector to its largest entries, elect a sign per entry, average the agreeing ones.

θ = θ₀ + λ · Σ_i w_i τ̂_i [sgn τ̂_i = s] / Σ_i w_i [sgn τ̂_i = s],  s = sgn(Σ_i w_i τ̂_i)
"""

from __future__ import annotations

import math

import torch

from evaluators.merge.base import MergeSpec, operator
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.parameters import Parameter
from evaluators.merge.task_arithmetic import LAMBDA

DENSITY = Parameter("density", 0.5, "share of entries TIES keeps", low=0.0, high=1.0, open_low=True)


def trim(deltas: torch.Tensor, density: float) -> torch.Tensor:
    """Keep, per member, the ceil(density·n) entries of largest magnitude; zero the rest."""
    if density >= 1.0:
        return deltas
    flat = deltas.reshape(deltas.shape[0], -1)
    keep = max(1, math.ceil(density * flat.shape[1]))
    top = flat.abs().topk(keep, dim=1).indices
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top, True)
    return (flat * mask).reshape(deltas.shape)


def disjoint_mean(deltas: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the members whose sign agrees with the elected (weighted-sum) sign."""
    wv = w.to(deltas.device).reshape(-1, *([1] * (deltas.dim() - 1)))
    weighted = wv * deltas
    sign = torch.sign(weighted.sum(dim=0))
    agree = (torch.sign(deltas) == sign) & (deltas != 0)
    numerator = (weighted * agree).sum(dim=0)
    denominator = (wv * agree).sum(dim=0)
    return torch.where(
        denominator != 0, numerator / denominator.where(denominator != 0, torch.ones_like(denominator)), 0.0
    )


@operator("ties", parameters=(LAMBDA, DENSITY), needs_base=True, normalize=None)
def ties(x: TensorInputs, w: torch.Tensor, spec: MergeSpec) -> torch.Tensor:
    """θ₀ + λ · the disjoint mean of the trimmed task vectors (Yadav et al., "TIES-Merging", NeurIPS 2023)."""
    return x.base + spec.value(LAMBDA) * disjoint_mean(trim(x.deltas(), spec.value(DENSITY)), w)
