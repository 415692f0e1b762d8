"""Runs inside vLLM's worker processes, mixed into the worker via ``worker_extension_cls``.

The pool is loaded beside the engine's model (on the engine's own device), so a trial sends only
its weights across the process boundary, never tensors. The merge is streamed into the engine with
the worker's public ``reload_weights``, which maps checkpoint names onto vLLM's fused and
tensor-parallel layouts itself. Imports stay light: lm-eval is never loaded in the engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from evaluators.merge import MergePoint
from evaluators.resident import MergeSource, ResidentPool


class MergeExtension:
    """Methods the driver calls with ``LLM.collective_rpc``; ``self`` is a vLLM worker."""

    device: torch.device
    _mergefront_pool: ResidentPool

    if TYPE_CHECKING:  # provided by the vLLM worker; defining it here would clash with vLLM's own

        def reload_weights(self, *args: Any, **kwargs: Any) -> None: ...

    def mergefront_load(self, source: dict[str, Any]) -> str:
        """Load the pool (given as ``MergeSource`` JSON) onto this worker's device; returns the device."""
        self._mergefront_pool = MergeSource.model_validate(source).resident(self.device)
        return str(self.device)

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
        self.reload_weights(weights_iterator=timed(self._mergefront_pool.merged(MergePoint(**point))))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return merge, time.perf_counter() - start - merge
