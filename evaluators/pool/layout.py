"""Pool checks before any search: same architecture, same tensor names, same shapes.

Reads only safetensors headers and config.json, so it is cheap even for large pools and
runs on the driver before a run directory exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evaluators.errors import PoolError
from evaluators.pool.config import CheckpointMember, Member, Pool
from evaluators.pool.files import CheckpointFiles, TensorInfo

SHOWN = 3  # how many offending tensor names an error lists


@dataclass(frozen=True)
class PoolLayout:
    """What every member shares: tensor names with shape and dtype (the first member's)."""

    members: tuple[str, ...]
    tensors: dict[str, TensorInfo]
    architecture: str


def member_dir(member: Member) -> Path:
    """The directory holding a member's weights; only full checkpoints are mergeable so far."""
    if not isinstance(member, CheckpointMember):
        raise PoolError(
            f"member '{member.name}' has kind '{member.kind}', which this version cannot merge yet; "
            "use kind 'checkpoint' (a full model directory)"
        )
    return member.path


def _architecture(directory: Path, owner: str) -> str:
    config = directory / "config.json"
    try:
        data = json.loads(config.read_text())
    except FileNotFoundError:
        raise PoolError(f"member '{owner}': {config} is missing; a model directory needs its config.json") from None
    except json.JSONDecodeError as exc:
        raise PoolError(f"member '{owner}': {config} is not valid JSON ({exc})") from None
    return f"{data.get('model_type', '?')}:{','.join(data.get('architectures') or ['?'])}"


def _compare(first: str, ref: dict[str, TensorInfo], name: str, other: dict[str, TensorInfo]) -> None:
    missing, extra = sorted(set(ref) - set(other)), sorted(set(other) - set(ref))
    if missing or extra:
        what = f"lacks {missing[:SHOWN]}" if missing else f"has extra {extra[:SHOWN]}"
        raise PoolError(
            f"member '{name}' {what} compared with '{first}'; all members must have the same tensor names"
        )
    for key, info in ref.items():
        if other[key].shape != info.shape:
            raise PoolError(
                f"tensor '{key}' has shape {list(other[key].shape)} in member '{name}' but "
                f"{list(info.shape)} in '{first}'; members must share one architecture and size"
            )


def inspect_pool(pool: Pool) -> PoolLayout:
    """Check that the pool's members can be merged; raise PoolError naming the first problem."""
    first = pool.members[0]
    arch = _architecture(member_dir(first), first.name)
    files = CheckpointFiles(member_dir(first), first.name)
    ref = {key: files.info(key) for key in files.keys()}
    for member in pool.members[1:]:
        directory = member_dir(member)
        other_arch = _architecture(directory, member.name)
        if other_arch != arch:
            raise PoolError(
                f"member '{member.name}' is a {other_arch} model but '{first.name}' is {arch}; "
                "a pool holds one architecture"
            )
        other_files = CheckpointFiles(directory, member.name)
        _compare(first.name, ref, member.name, {k: other_files.info(k) for k in other_files.keys()})
    return PoolLayout(members=tuple(pool.names), tensors=ref, architecture=arch)
