"""What a worker merges from, as plain data that can cross into a vLLM engine process, and how it
becomes a ``PoolMerger`` on the worker's device with its pool tier chosen there (free memory is
measured where the sources will live)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from evaluators.core.config import Frozen
from evaluators.merge import MergeSpec
from evaluators.merge.engine import PoolMerger, plan_for
from evaluators.pool import Pool
from evaluators.pool.plan import PoolPlan
from evaluators.pool.tiers import DEVICE_HEADROOM, TIERS, Placement, choose_tier

log = logging.getLogger(__name__)
TierName = Literal["auto", "device", "host", "disk"]


class MergeSetup(Frozen):
    """The pool, the merge method, weight groups and the requested pool tier."""

    pool: Pool
    merge: MergeSpec = MergeSpec()
    groups: dict[str, str] = Field(default_factory=dict)
    tier: TierName = "auto"

    def model_dir(self) -> Path:
        """The folder whose config and tokenizer the live model is built from."""
        return self.pool.model_dir()

    def plan(self) -> PoolPlan:
        """The checked pool (file headers only: no tensor is read)."""
        return plan_for(self.pool, self.merge)

    def merger(
        self, device: torch.device, plan: PoolPlan | None = None, resident_share: float = 1.0 - DEVICE_HEADROOM
    ) -> tuple[PoolMerger, Placement]:
        """Place the pool's sources for ``device`` (``auto``: see ``choose_tier``) and return the merger."""
        plan = plan or self.plan()
        placement = choose_tier(self.tier, plan, device, resident_share=resident_share)
        log.info("pool tier %s: %s", placement.tier, placement.reason)
        return PoolMerger(plan, self.merge, TIERS.get(placement.tier)(plan, device), device, self.groups), placement
