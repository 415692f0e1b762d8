"""One tensor's pool data, in the form every operator reads: sources, mixing matrix, low-rank terms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from evaluators.merge.kernel import Combination, LowRankTerm, combine_into
from evaluators.pool.adapters import LowRank

CPU = torch.device("cpu")


@dataclass(frozen=True)
class TensorInputs:
    """Member i's value is Σ_u mix[i, u]·sources[u] (+ its low-rank term s_i·B_i@A_i).

    ``sources`` are the pool's tensors for this name in their stored dtype, wherever the pool tier
    keeps them (memory-mapped files, a private copy, the GPU); one may have fewer leading rows than
    ``shape`` (a smaller vocabulary: the missing rows are zero). Linear operators return a
    ``Combination`` of them, which the kernel writes straight into the output; only operators that
    need every member's value at once (TIES, DARE) densify, one tensor at a time, in float32.
    """

    key: str
    shape: tuple[int, ...]
    sources: Sequence[torch.Tensor | None]
    mix: torch.Tensor  # [K, U], float32, CPU
    lowrank: tuple[LowRank | None, ...]  # per member
    base_index: int | None
    device: torch.device = CPU

    def combination(self, w: torch.Tensor) -> Combination:
        """Σ_i w_i·value_i as a recipe over the sources; low-rank terms stay factors (w_i·s_i·B_i@A_i)."""
        coef = tuple((w.float() @ self.mix).tolist())
        terms = tuple(
            LowRankTerm(wi * lr.scale, lr.b, lr.a)
            for wi, lr in zip(w.tolist(), self.lowrank, strict=True)
            if lr is not None and wi != 0.0
        )
        return Combination(coef, terms)

    def dense(self, combo: Combination) -> torch.Tensor:
        """``combo`` evaluated into a new float32 tensor of ``shape``."""
        out = torch.empty(self.shape, dtype=torch.float32, device=self.device)
        combine_into(out, self.sources, combo)
        return out

    @cached_property
    def base(self) -> torch.Tensor:
        """θ₀ in float32 (computed once per tensor: operators use it more than once)."""
        if self.base_index is None:
            raise ValueError("this operator needs a merge base")
        return self.dense(self.unit(self.base_index))

    def unit(self, u: int) -> Combination:
        """Source ``u`` (a column of the mix) alone, as a combination."""
        return Combination(tuple(float(i == u) for i in range(self.mix.shape[1])))

    def values(self) -> torch.Tensor:
        """Every member's value, [K, *shape] float32 (densifies: for non-linear operators only)."""
        eye = torch.eye(self.mix.shape[0])
        return torch.stack([self.dense(self.combination(eye[i])) for i in range(self.mix.shape[0])])

    def deltas(self) -> torch.Tensor:
        """Task vectors τ_i = value_i − θ₀, [K, *shape] float32."""
        return self.values() - self.base
