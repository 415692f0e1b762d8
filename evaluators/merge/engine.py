"""The merge engine: one code path, two modes.

- Streaming (``stream_merge``): tensor by tensor from the pool's files into sharded
  safetensors; peak memory is a few tensors plus one output shard, whatever K is.
- Resident (``evaluators.resident``): the same operators over tensors kept in memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from tqdm import tqdm

from evaluators.errors import ConfigError, PoolError
from evaluators.merge.base import OPERATORS, MergeSpec
from evaluators.merge.inputs import read_inputs
from evaluators.merge.point import MergePoint, ResolvedPoint, assign_groups
from evaluators.pool import LoraMember, Pool
from evaluators.pool.plan import PoolPlan
from evaluators.pool.safetensors_io import ShardedWriter

# Files copied next to the merged weights so the directory loads like any HF model.
COMPANIONS = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def plan_for(pool: Pool, spec: MergeSpec) -> PoolPlan:
    """Check that ``spec``'s method can merge ``pool``, and plan it."""
    op = OPERATORS.get(spec.method)
    if op.adapters_only and not all(isinstance(m, LoraMember) for m in pool.members):
        raise PoolError(f"merge method '{spec.method}' needs a pool of LoRA members only")
    if op.needs_base and pool.merge_base is None:
        found = f"several bases ({', '.join(pool.bases)}) and no 'base:' to pick one" if pool.bases else "no entry under 'bases'"
        raise PoolError(
            f"merge method '{spec.method}' needs a merge base θ₀, but pool '{pool.name}' has {found}; "
            "declare the base under 'bases' (and name it with 'base:' if there are several)"
        )
    return PoolPlan(pool, need_base=op.needs_base)


def stream_merge(
    plan: PoolPlan,
    spec: MergeSpec,
    point: MergePoint,
    out_dir: Path,
    groups: Mapping[str, str] | None = None,
    max_shard_bytes: int = 2 * 1024**3,
    progress: bool = False,
    stacked: bool = False,
) -> Path:
    """Write the merge into a new model directory ``out_dir`` (weights, config, tokenizer).

    With ``stacked``, each tensor's sources are stacked in memory as a CPU worker holds them, so the
    output equals that worker's merge bit for bit (peak memory: the sources of the largest tensor);
    without, a linear merge adds one source at a time (peak memory independent of the pool size).
    """
    if out_dir.exists():
        raise ConfigError(f"output directory {out_dir} already exists; choose a new one")
    resolved = ResolvedPoint(point, plan.members, spec, assign_groups(plan.tensors, groups or {}))
    fn = OPERATORS.get(spec.method).fn
    writer = ShardedWriter(out_dir, max_shard_bytes)
    try:
        for key in tqdm(list(plan.tensors), desc="merge", unit="tensor", disable=not progress):
            inputs = read_inputs(plan, key).resident(torch.device("cpu")) if stacked else read_inputs(plan, key)
            writer.add(key, fn(inputs, resolved.vector(key), resolved.spec).to(plan.dtype(key)))
        writer.write_file("config.json", json.dumps(plan.output_config(), indent=2))
        for name in COMPANIONS:
            if (plan.model_dir() / name).is_file():
                writer.copy_file(plan.model_dir() / name)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return out_dir
