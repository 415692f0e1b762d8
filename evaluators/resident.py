"""Resident mode: the pool lives once in worker memory and each trial's merge is written
straight into the live model's parameters (no file I/O, no model re-instantiation)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from evaluators.errors import PoolError
from evaluators.merge import MergeOperator
from evaluators.pool import Pool
from evaluators.pool.files import CheckpointFiles
from evaluators.pool.layout import PoolLayout, member_dir


class ResidentPool:
    """Every member's tensors stacked per name as [K, *shape] float32 on ``device``."""

    def __init__(self, pool: Pool, layout: PoolLayout, device: torch.device) -> None:
        self.members = list(layout.members)
        files = [CheckpointFiles(member_dir(m), m.name) for m in pool.members]
        self.stacks: dict[str, torch.Tensor] = {}
        self.fixed: dict[str, torch.Tensor] = {}
        self._targets: Mapping[str, torch.Tensor] = {}
        for key in layout.tensors:
            first = files[0].tensor(key)
            if first.is_floating_point():
                self.stacks[key] = torch.stack([f.tensor(key).float() for f in files]).to(device)
            else:  # integer buffers are not merged: they are the same model bookkeeping in every member
                self.fixed[key] = first.to(device)

    def bind(self, targets: Mapping[str, torch.Tensor]) -> None:
        """Check once that pool and live model have the same tensor names and shapes, then keep them."""
        uncovered = sorted(set(targets) - set(self.stacks) - set(self.fixed))
        if uncovered:
            raise PoolError(f"the worker's model has tensors no pool member provides: {uncovered[:3]}")
        for key, stack in [*self.stacks.items(), *self.fixed.items()]:
            if key not in targets:
                raise PoolError(f"tensor '{key}' from the pool has no counterpart in the worker's model")
            shape = tuple(stack.shape[1:]) if key in self.stacks else tuple(stack.shape)
            if tuple(targets[key].shape) != shape:
                raise PoolError(
                    f"tensor '{key}' has shape {list(shape)} in the pool but "
                    f"{list(targets[key].shape)} in the worker's model"
                )
        self._targets = targets

    def weight_vector(self, weights: Mapping[str, float]) -> torch.Tensor:
        unknown = set(weights) - set(self.members)
        if unknown:
            raise PoolError(f"weights name unknown members {sorted(unknown)}; members are {self.members}")
        return torch.tensor([float(weights.get(m, 0.0)) for m in self.members], dtype=torch.float32)

    @torch.no_grad()
    def merge_into(self, operator: MergeOperator, weights: Mapping[str, float]) -> None:
        """Write ``operator(pool, weights)`` into the bound model's tensors, in their dtype."""
        first = next(iter(self.stacks.values()), None)
        w = self.weight_vector(weights).to(first.device if first is not None else "cpu")
        for key, stack in self.stacks.items():
            self._targets[key].copy_(operator(stack, w))
        for key, value in self.fixed.items():
            self._targets[key].copy_(value)
