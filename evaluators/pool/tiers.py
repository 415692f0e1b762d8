"""Pool tiers: where a worker keeps the pool's sources between trials, chosen per run (``workers.pool``).

Sources always stay in their stored dtype; a tier only decides where their bytes live.

| tier   | sources live                                  | memory it costs                                   |
|--------|-----------------------------------------------|---------------------------------------------------|
| device | a private copy on the worker's device (GPU)   | pool bytes per worker, on the device              |
| host   | the page cache, memory-mapped by every worker | pool bytes per node, shared by all its workers    |
| disk   | the files, mapped per trial and released      | a few tensors per worker; the page cache helps    |

On a GPU the host and disk tiers stream each source to the device while the kernel works on the
previous one (``evaluators.merge.kernel``). ``auto`` picks from measured free memory; every tier
feeds the same kernel, so all give bit-identical merges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from evaluators.core.registry import Registry
from evaluators.pool.plan import PoolPlan

GB = 1e9
DEVICE_HEADROOM = 0.2  # share of a GPU left for activations, KV cache and the allocator's slack
HOST_HEADROOM = 0.8  # share of available host memory the page-cache copy may fill


class SourceTier(Protocol):
    """One tensor name's sources, one per plan source, in stored dtype (rows as stored: not padded)."""

    name: str

    def fetch(self, key: str) -> list[torch.Tensor]:
        """Tensor ``key``'s sources, in plan order; valid until ``done(key)``."""

    def done(self, key: str) -> None:
        """The merge of ``key`` is written: what the tier held for it may go."""
        ...


TierFactory = Callable[[PoolPlan, torch.device], SourceTier]
TIERS: Registry[TierFactory] = Registry("pool tier")


@TIERS.register("device")
class DeviceTier:
    """Every source copied once onto the worker's device: no transfer per trial, pool bytes per worker."""

    name = "device"

    def __init__(self, plan: PoolPlan, device: torch.device) -> None:
        self._tensors = {key: [s.read(key).to(device) for s in plan.sources] for key in plan.tensors}

    def fetch(self, key: str) -> list[torch.Tensor]:
        """The device copies themselves: the merge must not write to them."""
        return self._tensors[key]

    def done(self, key: str) -> None:
        """Nothing to free: the copy is kept for the next trial."""


@TIERS.register("host")
class HostTier:
    """The files memory-mapped and read in at start: one copy per node, in the page cache, whatever the
    number of workers; a GPU worker streams each tensor to the device per trial."""

    name = "host"
    populate = True

    def __init__(self, plan: PoolPlan, device: torch.device) -> None:
        self._plan = plan
        for s in plan.sources:
            s.files.map(populate=self.populate)

    def fetch(self, key: str) -> list[torch.Tensor]:
        """Views over the memory maps (CPU, read-only); the kernel moves them to the device."""
        return [s.view(key) for s in self._plan.sources]

    def done(self, key: str) -> None:
        """Nothing to free: the mapping stays for the next trial."""


@TIERS.register("disk")
class DiskTier(HostTier):
    """The files mapped but not read in; each tensor's pages are released after its merge, so a worker
    holds a few tensors and a pool larger than memory still merges (at the disk's speed)."""

    name = "disk"
    populate = False

    def done(self, key: str) -> None:
        """Release ``key``'s pages in every source, so the worker's memory does not grow with the pool."""
        for s in self._plan.sources:
            s.release(key)


@dataclass(frozen=True)
class Placement:
    """The tier a worker uses and why (logged, and shown by the driver)."""

    tier: str
    reason: str


def pool_bytes(plan: PoolPlan) -> int:
    """Bytes of every source tensor, as stored."""
    return sum(s.nbytes(key) for s in plan.sources for key in plan.tensors)


def size_text(nbytes: int) -> str:
    """``12.6 MB`` or ``3.41 GB``: a toy pool's size is not ``0.01 GB``."""
    return f"{nbytes / GB:.2f} GB" if nbytes >= GB else f"{nbytes / 1e6:.1f} MB"


def available_host_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable (free memory plus reclaimable page cache), or None where the kernel does not say."""
    try:
        line = next(x for x in meminfo.read_text().splitlines() if x.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


def choose_tier(
    requested: str, plan: PoolPlan, device: torch.device, *, resident_share: float = 1.0 - DEVICE_HEADROOM
) -> Placement:
    """``requested`` as it is, or for ``auto`` the fastest tier that fits: ``device`` on a GPU with room for
    the pool beside the model (measured after the model is built; ``resident_share`` of total GPU memory
    may be used in all), else ``host`` when the pool fits the node's available memory, else ``disk``."""
    size = pool_bytes(plan)
    if requested != "auto":
        TIERS.get(requested)
        return Placement(requested, f"set in the experiment ({size_text(size)} of sources)")
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        room = min(free, resident_share * total - (total - free))
        if size <= room:
            return Placement(
                "device",
                f"{size_text(size)} of sources fit beside the model on {device} ({room / GB:.1f} GB to spare)",
            )
    host = available_host_bytes()
    if host is None or size <= HOST_HEADROOM * host:
        where = "unknown" if host is None else f"{host / GB:.1f} GB"
        return Placement(
            "host",
            f"{size_text(size)} of sources fit the node's available memory ({where}); one copy per node, shared by its workers",
        )
    return Placement(
        "disk",
        f"{size_text(size)} of sources exceed {HOST_HEADROOM:.0%} of the node's available memory ({host / GB:.1f} GB); read from the files each trial",
    )
