"""SLERP: spherical linear interpolation between two members, tensor by tensor.

The formula is Shoemake's (1985, "Animating rotation with quaternion curves", SIGGRAPH), computed
exactly as mergekit 0.1.5 does (``mergekit/merge_methods/slerp.py``), so its recipes compute our
tensors: with a, b the two members' values, each whole tensor flattened, in float32,

    dot = ⟨a/‖a‖, b/‖b‖⟩ clamped to [−1, 1]      (a norm ≤ 1e-8 counts as 1)
    θ   = arccos dot
    out = sin((1−t)θ)/sin θ · a + sin(tθ)/sin θ · b,   or (1−t)·a + t·b where |dot| > 0.9995

t = 0 gives the first member (mergekit's ``base_model``), t = 1 the second. The coefficients depend on
the tensors only through ``dot``, so SLERP is one linear combination per tensor: the dot comes first
(the norms and the dot summed over 2^20-element chunks, as mergekit sums them), then the kernel writes
the combination like any linear method, and a worker's merge equals the exported one bit for bit.

The weights pick the two members: those with a non-zero weight, in the pool's order (the values of
the weights do not matter). With one, the merge is that member (SLERP of a member with itself).
"""

from __future__ import annotations

import torch

from evaluators.merge.base import MergeSpec, operator
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.kernel import Combination
from evaluators.merge.parameters import Parameter

T = Parameter("t", 0.5, "SLERP's position between its two members (0: the first, 1: the second)", low=0.0, high=1.0)
DOT_THRESHOLD = 0.9995  # beyond it the members are (anti)parallel: sin θ ≈ 0, interpolate linearly
EPS = 1e-8
CHUNK_ELEMENTS = 1024 * 1024  # mergekit's reduction chunk; the same chunks give the same float32 sums


def _chunks(v: torch.Tensor) -> list[torch.Tensor]:
    return [v[:, i : i + CHUNK_ELEMENTS] for i in range(0, v.shape[1], CHUNK_ELEMENTS)]


def _norm(v: torch.Tensor) -> torch.Tensor:
    """‖v‖ as a norm of chunk norms ([1, 1]); 1 where it is at most EPS."""
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(c, dim=1, keepdim=True) for c in _chunks(v)]), dim=0
    )
    return torch.where(norm > EPS, norm, 1)


def coefficients(a: torch.Tensor, b: torch.Tensor, t: float) -> tuple[float, float]:
    """SLERP's (coefficient of a, coefficient of b) for two float32 tensors of one shape, as mergekit
    computes them (float32 throughout, so the values are exactly float32 numbers)."""
    a, b = a.reshape(1, -1), b.reshape(1, -1)
    tt = torch.tensor([[t]], dtype=torch.float32, device=a.device)
    if not a.shape[1]:
        return float(1 - tt), float(tt)
    norm_a, norm_b = _norm(a), _norm(b)
    parts = [
        ((x / norm_a) * (y / norm_b)).sum(dim=1, keepdim=True) for x, y in zip(_chunks(a), _chunks(b), strict=True)
    ]
    dot = torch.stack(parts).sum(dim=0).clamp(-1, 1)
    linear = dot.abs() > DOT_THRESHOLD
    theta = torch.acos(torch.where(linear, 0, dot))
    sin_theta = torch.sin(theta)
    coef_a = torch.where(linear, 1 - tt, torch.sin((1 - tt) * theta) / sin_theta)
    coef_b = torch.where(linear, tt, torch.sin(tt * theta) / sin_theta)
    return float(coef_a), float(coef_b)


@operator("slerp", parameters=(T,), max_members=2, normalize=None)
def slerp(x: TensorInputs, w: torch.Tensor, spec: MergeSpec) -> Combination:
    """SLERP at ``t`` between the two members with a non-zero weight (pool order; the weights' values do not matter),
    as one combination of the two; with a single such member, that member."""
    picked = [i for i, wi in enumerate(w.tolist()) if wi != 0.0]
    if len(picked) != 2:  # one member: itself; more are refused before the merge (``max_members``)
        return x.combination((w != 0).float())
    eye = torch.eye(len(w))
    first, second = (x.dense(x.combination(eye[i])) for i in picked)
    coef_a, coef_b = coefficients(first, second, float(spec.value(T)))
    del first, second
    mixed = torch.zeros(len(w), dtype=torch.float32)
    mixed[picked[0]], mixed[picked[1]] = coef_a, coef_b
    return x.combination(mixed)
