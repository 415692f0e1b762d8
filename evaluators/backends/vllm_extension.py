"""Runs inside vLLM's worker processes, mixed into the worker via ``worker_extension_cls``.

Each engine process (one per tensor-parallel rank) opens the pool through its pool tier on its own
device: with the host tier, every rank on a node maps the same files, so the node holds one copy in
its page cache, not one per rank. A trial sends only its weights across the process boundary, never
tensors. The merge is streamed into the engine one tensor at a time with the worker's public
``reload_weights``, which maps checkpoint names onto vLLM's fused and tensor-parallel layouts itself,
so a rank's transient memory is the tensor in hand. Imports stay light: lm-eval is never loaded here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from evaluators.merge import MergePoint
from evaluators.merge.engine import PoolMerger
from evaluators.merge.resident import MergeSetup

RESIDENT_SHARE = 0.97  # the engine has already taken its share of the GPU; the pool may use what is left


class MergeExtension:
    """Methods the driver calls with ``LLM.collective_rpc``; ``self`` is a vLLM worker."""

    device: torch.device
    _mergefront_merger: PoolMerger

    if TYPE_CHECKING:  # provided by the vLLM worker; defining it here would clash with vLLM's own

        def reload_weights(self, *args: Any, **kwargs: Any) -> None:
            """vLLM's worker method, declared for the type checker only."""

    def mergefront_load(self, source: dict[str, Any]) -> tuple[str, str]:
        """Open the pool (given as ``MergeSetup`` JSON) for this worker's device; returns the device and
        the pool tier chosen, with why."""
        self._mergefront_merger, placed = MergeSetup.model_validate(source).merger(
            self.device, resident_share=RESIDENT_SHARE
        )
        return str(self.device), f"pool tier {placed.tier} ({placed.reason})"

    def mergefront_swap(self, point: dict[str, Any]) -> tuple[float, float]:
        """Merge ``point`` (``MergePoint`` fields) into the engine; returns (merge, swap) seconds."""
        merge = 0.0

        def timed(tensors: Iterator[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal merge
            while True:
                start = time.perf_counter()
                item = next(tensors, None)
                merge += time.perf_counter() - start
                if item is None:
                    return
                yield item

        start = time.perf_counter()
        self.reload_weights(weights_iterator=timed(self._mergefront_merger.merged(MergePoint(**point))))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return merge, time.perf_counter() - start - merge
