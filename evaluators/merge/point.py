"""One merge to build: member weights (optionally per tensor group) and the values of searched knobs.

A group is a named regular expression over tensor names (e.g. ``self_attn`` or
``layers\\.[0-3]\\.``); a tensor takes the weights of the first group whose pattern it
matches (``re.search``) and the point's plain ``weights`` otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from evaluators.core.errors import ConfigError, PoolError
from evaluators.merge.base import MergeSpec


def weight_vector(members: list[str], weights: Mapping[str, float]) -> torch.Tensor:
    """One float32 weight per member, in ``members`` order, 0 for members ``weights`` leaves out; PoolError for a
    name that is not a member."""
    unknown = sorted(set(weights) - set(members))
    if unknown:
        raise PoolError(f"weights name unknown members {unknown}; members are {members}")
    return torch.tensor([float(weights.get(m, 0.0)) for m in members], dtype=torch.float32)


@dataclass(frozen=True)
class MergePoint:
    """Member weights by name, one weight map per group that needs its own, and values for searched method parameters
    (``knobs``, by name). Not yet bound to a pool: see ``ResolvedPoint``."""

    weights: Mapping[str, float]
    groups: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    knobs: Mapping[str, float] = field(default_factory=dict)


def assign_groups(keys: Iterable[str], patterns: Mapping[str, str]) -> dict[str, str]:
    """Tensor name -> group name for the tensors some pattern matches; every group must match one."""
    compiled = {name: re.compile(p) for name, p in patterns.items()}
    out = {}
    for key in keys:
        group = next((name for name, rx in compiled.items() if rx.search(key)), None)
        if group is not None:
            out[key] = group
    empty = sorted(set(patterns) - set(out.values()))
    if empty:
        raise ConfigError(
            f"weight group(s) {empty} match no tensor of the pool (e.g. {next(iter(keys), '?')!r}); fix their patterns"
        )
    return out


def _check_member_count(spec: MergeSpec, members: list[str], w: torch.Tensor) -> None:
    """Refuse, before any tensor is merged, more non-zero weights than the method can merge."""
    most = spec.operator.max_members
    weighted = [m for m, x in zip(members, w.tolist(), strict=True) if x != 0.0]
    if most is not None and len(weighted) > most:
        raise ConfigError(
            f"merge method '{spec.method}' merges at most {most} members, but the weights give "
            f"{len(weighted)} a non-zero weight ({', '.join(weighted)}); give weight to {most} of them"
        )


class ResolvedPoint:
    """A point bound to a pool: the weight vector of each tensor and the merge spec with knobs applied."""

    def __init__(
        self,
        point: MergePoint,
        members: list[str],
        spec: MergeSpec,
        group_of: Mapping[str, str],
        device: torch.device | None = None,
    ) -> None:
        missing = sorted(set(group_of.values()) - set(point.groups))
        if missing:
            raise PoolError(f"the merge point gives no weights for group(s) {missing}")
        self.spec = MergeSpec(**{**spec.model_dump(), **point.knobs}) if point.knobs else spec
        self.default = weight_vector(members, point.weights).to(device)
        self.by_group = {g: weight_vector(members, w).to(device) for g, w in point.groups.items()}
        self.group_of = group_of
        for w in (self.default, *self.by_group.values()):
            _check_member_count(self.spec, members, w)

    def vector(self, key: str) -> torch.Tensor:
        """The weight vector for tensor ``key``: its group's, else the point's plain weights."""
        group = self.group_of.get(key)
        return self.default if group is None else self.by_group[group]
