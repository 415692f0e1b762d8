"""The checkpoint pool: its schema (``checkpoints.yaml``), file reading and consistency checks."""

from evaluators.pool.config import (
    BaseModelEntry,
    CheckpointMember,
    FinetuneMember,
    LoraMember,
    Member,
    Pool,
    TransferMember,
    load_pool,
)

__all__ = [
    "BaseModelEntry",
    "CheckpointMember",
    "FinetuneMember",
    "LoraMember",
    "Member",
    "Pool",
    "TransferMember",
    "load_pool",
]
