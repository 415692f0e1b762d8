"""One tensor's pool data, in the form every operator reads: sources, mixing matrix, low-rank terms."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evaluators.pool.adapters import LowRank
from evaluators.pool.plan import PoolPlan


@dataclass(frozen=True)
class TensorInputs:
    """Member i's value is Σ_u mix[i, u]·sources[u] (+ its low-rank term); all float32."""

    key: str
    sources: torch.Tensor  # [U, *shape]
    mix: torch.Tensor  # [K, U]
    lowrank: tuple[LowRank | None, ...]  # per member
    base_index: int | None

    @property
    def base(self) -> torch.Tensor:
        if self.base_index is None:
            raise ValueError("this operator needs a merge base")
        return self.sources[self.base_index]

    def weighted_sum(self, w: torch.Tensor) -> torch.Tensor:
        """Σ_i w_i·value_i; low-rank terms are added as w_i·s_i·B_i@A_i, never densified K times."""
        out = torch.tensordot(w @ self.mix, self.sources, dims=1)
        for wi, lr in zip(w.tolist(), self.lowrank, strict=True):
            if lr is not None and wi != 0.0:
                out.addmm_(lr.b, lr.a, alpha=wi * lr.scale)
        return out

    def values(self) -> torch.Tensor:
        """Every member's value, [K, *shape] (densifies low-rank terms: for non-linear operators)."""
        out = torch.tensordot(self.mix, self.sources, dims=1)
        for i, lr in enumerate(self.lowrank):
            if lr is not None:
                out[i].addmm_(lr.b, lr.a, alpha=lr.scale)
        return out

    def deltas(self) -> torch.Tensor:
        """Task vectors τ_i = value_i − θ₀, [K, *shape]."""
        return self.values() - self.base

    def to(self, device: torch.device) -> TensorInputs:
        lowrank = tuple(
            None if lr is None else LowRank(lr.a.float().to(device), lr.b.float().to(device), lr.scale)
            for lr in self.lowrank
        )
        return TensorInputs(self.key, self.sources.to(device), self.mix.to(device), lowrank, self.base_index)


def read_inputs(plan: PoolPlan, key: str) -> TensorInputs:
    """Read one tensor of every source the pool uses (one tensor at a time, from disk)."""
    sources = torch.stack([plan.source_tensor(u, key) for u in range(len(plan.sources))])
    lowrank = tuple(
        None if lr is None else LowRank(lr.a.float(), lr.b.float(), lr.scale) for lr in plan.lowrank(key)
    )
    return TensorInputs(key, sources, plan.mix.float(), lowrank, plan.base_index)
