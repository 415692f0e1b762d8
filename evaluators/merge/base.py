"""The merge-operator plug point: a pure function over one tensor's stacked pool values."""

from __future__ import annotations

from typing import Protocol

import torch

from evaluators.config import Frozen
from evaluators.registry import Registry


class MergeOperator(Protocol):
    """Merge one tensor: ``stack`` is [K, *shape] float32 (one slice per member), ``weights`` is [K].

    Returns the merged float32 tensor of ``shape``; the caller casts to the pool dtype.
    """

    def __call__(self, stack: torch.Tensor, weights: torch.Tensor) -> torch.Tensor: ...


OPERATORS: Registry[MergeOperator] = Registry("merge method")


class MergeSpec(Frozen):
    """Which operator an experiment merges with."""

    method: str = "linear"
