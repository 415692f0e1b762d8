"""DARE: drop each task-vector entry with probability p and rescale survivors by 1/(1−p), then
combine linearly (``dare_linear``: θ₀ + λ Σ w_i τ̃_i) or with TIES sign consensus (``dare_ties``).

The drop mask depends only on (seed, tensor name, member index), so streaming and resident
merges, on CPU or GPU, drop the same entries.
"""

from __future__ import annotations

import zlib

import torch

from evaluators.merge.base import MergeSpec, operator
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.parameters import Parameter
from evaluators.merge.task_arithmetic import LAMBDA
from evaluators.merge.ties import disjoint_mean

DROP = Parameter("drop", 0.5, "DARE's drop probability", low=0.0, high=1.0, open_high=True)
SEED = Parameter("seed", 0, "DARE's seed", integer=True, searchable=False)


def drop_and_rescale(deltas: torch.Tensor, p: float, seed: int, key: str) -> torch.Tensor:
    """DARE's drop on ``deltas`` (members along dim 0): each entry zeroed with probability ``p``, survivors scaled by
    1/(1−p) to keep the expectation. The mask is seeded by (``seed``, ``key``, member index) and drawn on the CPU,
    so every device and merge path drops the same entries."""
    if p == 0.0:
        return deltas
    out = torch.empty_like(deltas)
    for i in range(deltas.shape[0]):
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}:{i}".encode()))
        keep = torch.rand(deltas.shape[1:], generator=gen) >= p
        out[i] = deltas[i] * keep.to(deltas.device) / (1.0 - p)
    return out


def _dropped(x: TensorInputs, spec: MergeSpec) -> torch.Tensor:
    return drop_and_rescale(x.deltas(), spec.value(DROP), spec.value(SEED), x.key)


@operator("dare_linear", parameters=(LAMBDA, DROP, SEED), needs_base=True)
def dare_linear(x: TensorInputs, w: torch.Tensor, spec: MergeSpec) -> torch.Tensor:
    """θ₀ + λ Σ_i w_i τ̃_i, with τ̃_i the dropped and rescaled task vectors (Yu et al., "Language Models are Super
    Mario", ICML 2024)."""
    return x.base + spec.value(LAMBDA) * torch.tensordot(w.to(x.device), _dropped(x, spec), dims=1)


@operator("dare_ties", parameters=(LAMBDA, DROP, SEED), needs_base=True, normalize=None)
def dare_ties(x: TensorInputs, w: torch.Tensor, spec: MergeSpec) -> torch.Tensor:
    """θ₀ + λ · TIES's disjoint mean of the dropped and rescaled task vectors (no trimming: the drop sparsifies)."""
    return x.base + spec.value(LAMBDA) * disjoint_mean(_dropped(x, spec), w)
