"""The checkpoint pool: its schema (``checkpoints.yaml``), file reading and consistency checks.

Imports: the shared modules of ``evaluators`` only (errors, config, registry); never ``merge``,
``backends`` or the worker, which build on the pool (``tests/test_house.py`` holds the order).
"""

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
