"""Pickle weights (``pytorch_model.bin``), read only when the user passed ``--allow-pickle``.

Even then the file goes through ``torch.load(weights_only=True)``, whose restricted unpickler
builds tensors and plain containers only: a file that would construct any other object (the
way a hostile pickle runs code) is refused, and nothing in it is executed.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from evaluators.core.errors import PoolError
from evaluators.pool.safetensors_io import Entry


class PickleFile:
    """One ``torch.save`` file of tensors, loaded memory-mapped, with the same face as ``SafetensorsFile``."""

    def __init__(self, path: Path, owner: str) -> None:
        self.path = path
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PoolError(
                f"member '{owner}': {path} was refused by torch.load(weights_only=True) ({first}); "
                "it holds more than tensors, or is corrupt: convert the checkpoint to safetensors from a trusted copy"
            ) from None
        if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise PoolError(f"member '{owner}': {path} is not a flat mapping of tensor names to tensors (a state_dict)")
        self._tensors: dict[str, torch.Tensor] = loaded
        self.entries = {
            key: Entry(t.dtype, tuple(t.shape), 0, t.numel() * t.element_size()) for key, t in loaded.items()
        }

    def read(self, key: str) -> torch.Tensor:
        """A private copy of ``key`` (the loaded tensor is backed by the file's memory map)."""
        return self._tensors[key].clone()

    def map(self, populate: bool) -> None:
        """Already memory-mapped by ``torch.load(mmap=True)``; nothing to do."""

    def view(self, key: str) -> torch.Tensor:
        """The loaded tensor itself, over the file's memory map: read-only by contract."""
        return self._tensors[key]

    def release(self, key: str) -> None:
        """torch.load's mapping cannot drop pages; the page cache still reclaims them under pressure."""
