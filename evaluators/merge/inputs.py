"""One tensor's pool data, in the form every operator reads: sources, mixing matrix, low-rank terms."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from evaluators.pool.adapters import LowRank
from evaluators.pool.plan import PoolPlan


class DiskSources:
    """One tensor of every pool source, read from disk when asked (streaming mode)."""

    def __init__(self, plan: PoolPlan, key: str) -> None:
        self.plan, self.key = plan, key

    def __len__(self) -> int:
        return len(self.plan.sources)

    def __getitem__(self, u: int) -> torch.Tensor:
        return self.plan.source_tensor(u, self.key)


@dataclass(frozen=True)
class TensorInputs:
    """Member i's value is Σ_u mix[i, u]·sources[u] (+ its low-rank term); all float32.

    ``sources`` is a stacked [U, *shape] tensor (resident mode) or read one at a time from
    disk (streaming mode), so a linear merge never holds more than one source tensor.
    """

    key: str
    sources: torch.Tensor | DiskSources
    mix: torch.Tensor  # [K, U]
    lowrank: tuple[LowRank | None, ...]  # per member
    base_index: int | None

    @cached_property
    def base(self) -> torch.Tensor:
        """θ₀, read once per tensor even in streaming mode (operators use it more than once)."""
        if self.base_index is None:
            raise ValueError("this operator needs a merge base")
        return self.sources[self.base_index].float()

    def stacked(self) -> torch.Tensor:
        if isinstance(self.sources, torch.Tensor):
            return self.sources
        return torch.stack([self.sources[u].float() for u in range(len(self.sources))])

    def mixed(self, coef: torch.Tensor) -> torch.Tensor:
        """Σ_u coef[u]·sources[u]."""
        if isinstance(self.sources, torch.Tensor):
            return torch.tensordot(coef, self.sources, dims=1)
        out: torch.Tensor | None = None
        for u, c in enumerate(coef.tolist()):
            if c != 0.0 or out is None:
                t = self.sources[u]  # in the file's dtype: add_ accumulates it into float32 without a copy
                out = t.float() * c if out is None else out.add_(t, alpha=c)
        assert out is not None
        return out

    def weighted_sum(self, w: torch.Tensor) -> torch.Tensor:
        """Σ_i w_i·value_i; low-rank terms are added as w_i·s_i·B_i@A_i, never densified K times."""
        out = self.mixed(w @ self.mix)
        for wi, lr in zip(w.tolist(), self.lowrank, strict=True):
            if lr is not None and wi != 0.0:
                out.addmm_(lr.b, lr.a, alpha=wi * lr.scale)
        return out

    def values(self) -> torch.Tensor:
        """Every member's value, [K, *shape] (densifies low-rank terms: for non-linear operators)."""
        out = torch.tensordot(self.mix, self.stacked(), dims=1)
        for i, lr in enumerate(self.lowrank):
            if lr is not None:
                out[i].addmm_(lr.b, lr.a, alpha=lr.scale)
        return out

    def deltas(self) -> torch.Tensor:
        """Task vectors τ_i = value_i − θ₀, [K, *shape]."""
        return self.values() - self.base

    def resident(self, device: torch.device) -> TensorInputs:
        """The same inputs with every source read and stacked on ``device`` (resident mode)."""
        lowrank = tuple(
            None if lr is None else LowRank(lr.a.to(device), lr.b.to(device), lr.scale) for lr in self.lowrank
        )
        return TensorInputs(self.key, self.stacked().to(device), self.mix.to(device), lowrank, self.base_index)


def read_inputs(plan: PoolPlan, key: str) -> TensorInputs:
    """One tensor's inputs, its sources read from disk on demand."""
    lowrank = tuple(
        None if lr is None else LowRank(lr.a.float(), lr.b.float(), lr.scale) for lr in plan.lowrank(key)
    )
    return TensorInputs(key, DiskSources(plan, key), plan.mix.float(), lowrank, plan.base_index)
