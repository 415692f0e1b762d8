"""The merge engine: one loop over tensor names, used by the worker (in place, every trial) and by
export (``stream_merge``, into safetensors shards).

Both read the pool's sources through a pool tier (``evaluators.pool.tiers``) and compute each
tensor with the same operator and kernel, so a worker's merge and the exported one are equal bit
for bit. Peak memory beyond the sources: one output tensor (export) or nothing (in place), plus
the kernel's few-MiB accumulator; TIES and DARE add K float32 copies of the tensor in hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from tqdm import tqdm

from evaluators.core.errors import ConfigError, PoolError
from evaluators.merge.base import OPERATORS, MergeSpec
from evaluators.merge.inputs import TensorInputs
from evaluators.merge.point import MergePoint, ResolvedPoint, assign_groups
from evaluators.pool import LoraMember, Pool
from evaluators.pool.adapters import LowRank
from evaluators.pool.plan import PoolPlan
from evaluators.pool.safetensors_io import ShardedWriter
from evaluators.pool.tiers import TIERS, SourceTier

# Files copied next to the merged weights so the directory loads like any HF model.
COMPANIONS = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def plan_for(pool: Pool, spec: MergeSpec, exact: bool = True) -> PoolPlan:
    """Check that ``spec``'s method can merge ``pool``, and plan it (``exact``: see ``PoolPlan``)."""
    op = OPERATORS.get(spec.method)
    if op.adapters_only and not all(isinstance(m, LoraMember) for m in pool.members):
        raise PoolError(f"merge method '{spec.method}' needs a pool of LoRA members only")
    if op.needs_base and pool.merge_base is None:
        found = (
            f"several bases ({', '.join(pool.bases)}) and no 'base:' to pick one"
            if pool.bases
            else "no entry under 'bases'"
        )
        raise PoolError(
            f"merge method '{spec.method}' needs a merge base θ₀, but pool '{pool.name}' has {found}; "
            "declare the base under 'bases' (and name it with 'base:' if there are several)"
        )
    plan = PoolPlan(pool, need_base=op.needs_base, exact=exact)
    if op.same_factors:
        _check_same_factors(plan, spec.method)
    return plan


def _check_same_factors(plan: PoolPlan, method: str) -> None:
    """A factor-wise average needs every adapter to adapt the same modules with the same rank and scale."""
    adapters = [plan.adapters[i] for i in sorted(plan.adapters)]
    first = {k: (t.rank, t.scale) for k, t in adapters[0].targets.items()}
    for adapter in adapters[1:]:
        own = {k: (t.rank, t.scale) for k, t in adapter.targets.items()}
        if own == first:
            continue
        if set(own) != set(first):
            key = min(set(own) ^ set(first))
            which = adapter.owner if key in own else adapters[0].owner
            problem = f"only member '{which}' adapts '{key}'"
        else:
            key = next(k for k in sorted(own) if own[k] != first[k])
            problem = (
                f"'{key}' has rank {own[key][0]} and scale {own[key][1]:g} in member '{adapter.owner}' but rank "
                f"{first[key][0]} and scale {first[key][1]:g} in member '{adapters[0].owner}'"
            )
        raise PoolError(
            f"merge method '{method}' averages the adapters' factors, so every member must adapt the same modules "
            f"with the same rank and scale: {problem}; use method 'linear', which merges adapters of any rank exactly"
        )


class PoolMerger:
    """Merges points of one planned pool, tensor by tensor, from ``tier``'s sources on ``device``.

    LoRA factors are read once and kept on the device in their stored dtype (they are small);
    integer buffers (bookkeeping, equal in every member) are taken from the first source.
    """

    def __init__(
        self,
        plan: PoolPlan,
        spec: MergeSpec,
        tier: SourceTier,
        device: torch.device,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        self.plan, self.spec, self.tier, self.device = plan, spec, tier, device
        self.operator = OPERATORS.get(spec.method)
        self.group_of = assign_groups(plan.tensors, groups or {})
        self.mix = plan.mix.float()
        self.floating = [k for k in plan.tensors if plan.dtype(k).is_floating_point]
        self.fixed = [k for k in plan.tensors if not plan.dtype(k).is_floating_point]
        self.lowrank: dict[str, tuple[LowRank | None, ...]] = {}
        for key in self.floating:
            factors = plan.lowrank(key)
            if any(f is not None for f in factors):
                self.lowrank[key] = tuple(
                    None if f is None else LowRank(f.a.to(device), f.b.to(device), f.scale) for f in factors
                )

    def resolve(self, point: MergePoint) -> ResolvedPoint:
        """``point`` bound to this pool (per-tensor weight vectors, knobs applied to the spec); PoolError for unknown
        members or a group without weights, ConfigError for more members than the method merges."""
        return ResolvedPoint(point, self.plan.members, self.spec, self.group_of)

    def inputs(self, key: str) -> TensorInputs:
        """Tensor ``key``'s sources as the tier holds them (call ``tier.done(key)`` when finished)."""
        return TensorInputs(
            key,
            self.plan.tensors[key].shape,
            self.tier.fetch(key),
            self.mix,
            self.lowrank.get(key, (None,) * len(self.plan.members)),
            self.plan.base_index,
            self.device,
        )

    def tensor_into(self, key: str, resolved: ResolvedPoint, out: torch.Tensor) -> None:
        """Merge tensor ``key`` into ``out`` (its shape; any floating dtype, on ``device``)."""
        self.operator.write(self.inputs(key), resolved.vector(key), resolved.spec, out)
        self.tier.done(key)

    def fixed_tensor(self, key: str) -> torch.Tensor:
        """A non-floating tensor (e.g. an integer buffer) as the first source holds it: such tensors are copied, not
        merged."""
        return self.tier.fetch(key)[0]

    @torch.no_grad()
    def merge_into(self, point: MergePoint, targets: Mapping[str, torch.Tensor]) -> None:
        """Write the merge for ``point`` into ``targets`` (e.g. a live model's tensors, checked by ``check_targets``)."""
        resolved = self.resolve(point)
        for key in self.floating:
            self.tensor_into(key, resolved, targets[key])
        for key in self.fixed:
            targets[key].copy_(self.fixed_tensor(key))

    @torch.no_grad()
    def merged(self, point: MergePoint, dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        """The merge for ``point``, one new tensor at a time, by safetensors name, in ``dtype`` (default: as stored)."""
        resolved = self.resolve(point)
        for key in self.floating:
            out = torch.empty(self.plan.tensors[key].shape, dtype=dtype or self.plan.dtype(key), device=self.device)
            self.tensor_into(key, resolved, out)
            yield key, out
        for key in self.fixed:
            yield key, self.fixed_tensor(key).to(self.device)

    def check_targets(self, targets: Mapping[str, torch.Tensor]) -> None:
        """Once, before the first merge: every pool tensor has a place of its shape in the live model."""
        for key, info in self.plan.tensors.items():
            if key not in targets:
                raise PoolError(f"tensor '{key}' from the pool has no place in the worker's model")
            if tuple(targets[key].shape) != tuple(info.shape):
                raise PoolError(
                    f"tensor '{key}' has shape {list(info.shape)} in the pool but {list(targets[key].shape)} in the worker's model"
                )


def stream_merge(
    plan: PoolPlan,
    spec: MergeSpec,
    point: MergePoint,
    out_dir: Path,
    groups: Mapping[str, str] | None = None,
    max_shard_bytes: int = 2 * 1024**3,
    progress: bool = False,
) -> Path:
    """Write the merge into a new model directory ``out_dir`` (weights, config, tokenizer).

    Sources come through the disk tier (mapped, released tensor by tensor), so peak memory is one
    output shard plus the tensor in hand, whatever the pool's size; the arithmetic is the workers'.
    """
    if out_dir.exists():
        raise ConfigError(f"output directory {out_dir} already exists; choose a new one")
    cpu = torch.device("cpu")
    merger = PoolMerger(plan, spec, TIERS.get("disk")(plan, cpu), cpu, groups)
    merger.resolve(point)  # a point the method cannot merge is refused before anything is written
    writer = ShardedWriter(out_dir, max_shard_bytes)
    try:
        bar = tqdm(total=len(plan.tensors), desc="merge", unit="tensor", disable=not progress)
        for key, tensor in merger.merged(point):
            writer.add(key, tensor)
            bar.update(1)
        bar.close()
        writer.write_file("config.json", json.dumps(plan.output_config(), indent=2))
        for name in COMPANIONS:
            if (plan.model_dir() / name).is_file():
                writer.copy_file(plan.model_dir() / name)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return out_dir
