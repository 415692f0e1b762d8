"""Factor-wise LoRA averaging (AdaMix style): A = Σ w_i A_i, B = Σ w_i B_i, ΔW = s·B A.

Cheap and rank-preserving; equal to the exact mix (``linear``) only when one factor is shared.
Needs an all-LoRA pool on one base with equal rank and scale.
"""

from __future__ import annotations

import torch

from evaluators.core.errors import PoolError
from evaluators.merge.base import MergeSpec, operator
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.kernel import Combination, LowRankTerm


@operator("lora_factorwise", adapters_only=True, same_factors=True, normalize=True)
def lora_factorwise(x: TensorInputs, w: torch.Tensor, spec: MergeSpec) -> Combination:
    """One low-rank term from the weighted means of the members' A and B factors; a tensor no adapter touches falls
    back to the plain mix. Raises PoolError when the members' rank or scale differ on ``x.key``."""
    coef = tuple((w.float() @ x.mix).tolist())
    factors = [lr for lr in x.lowrank if lr is not None]
    if not factors:
        return Combination(coef)
    if len(factors) != len(x.lowrank) or len({(lr.a.shape, lr.scale) for lr in factors}) > 1:
        raise PoolError(f"lora_factorwise needs every member to adapt '{x.key}' with the same rank and scale")
    a = torch.tensordot(w.to(factors[0].a.device), torch.stack([lr.a.float() for lr in factors]), dims=1)
    b = torch.tensordot(w.to(factors[0].b.device), torch.stack([lr.b.float() for lr in factors]), dims=1)
    return Combination(coef, (LowRankTerm(factors[0].scale, b, a),))
