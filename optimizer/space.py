"""Weight spaces: how the sampler's raw parameters become the merge weights we record.

Simplex: one raw value x_i in [0, 1] per member, weights w = x / Σx (uniform when Σx = 0).
One-hot raw vectors give the single checkpoints and all-ones the uniform soup exactly, so the
baselines are ordinary points of the same space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optuna.distributions import BaseDistribution, FloatDistribution

PARAM_PREFIX = "x."


class SimplexSpace:
    def __init__(self, members: Sequence[str]) -> None:
        self.members = list(members)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {PARAM_PREFIX + m: FloatDistribution(0.0, 1.0) for m in self.members}

    def weights(self, params: Mapping[str, float]) -> dict[str, float]:
        raw = [float(params[PARAM_PREFIX + m]) for m in self.members]
        if any(not 0.0 <= x <= 1.0 for x in raw):
            raise ValueError(f"simplex parameters must lie in [0, 1], got {raw}")
        total = sum(raw)
        if total == 0.0:
            return {m: 1.0 / len(self.members) for m in self.members}
        return {m: x / total for m, x in zip(self.members, raw, strict=True)}

    def baselines(self) -> list[tuple[str, dict[str, float]]]:
        """Each single checkpoint, then the uniform average, as (label, raw params)."""
        out = [
            (f"single:{m}", {PARAM_PREFIX + o: float(o == m) for o in self.members}) for m in self.members
        ]
        if len(self.members) > 1:
            out.append(("uniform", {PARAM_PREFIX + o: 1.0 for o in self.members}))
        return out
