"""Read one checkpoint directory's safetensors lazily: headers without data, one tensor at a time.

Handles a single ``model.safetensors`` or shards listed in ``model.safetensors.index.json``.
Pickle files are never opened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from evaluators.errors import PoolError

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str


class CheckpointFiles:
    """The safetensors files of one model directory, opened memory-mapped on first use."""

    def __init__(self, directory: Path, owner: str) -> None:
        self.directory = directory
        self.owner = owner
        self._handles: dict[Path, object] = {}
        self._file_of = self._map_keys()

    def _map_keys(self) -> dict[str, Path]:
        index = self.directory / INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise PoolError(f"member '{self.owner}': {index} is not a valid safetensors index ({exc})") from None
            files = {key: self.directory / shard for key, shard in weight_map.items()}
            for shard in sorted(set(files.values())):
                if not shard.is_file():
                    raise PoolError(
                        f"member '{self.owner}': shard {shard.name} listed in {INDEX} is missing from {self.directory}"
                    )
            return files
        single = self.directory / SINGLE
        if not single.is_file():
            raise PoolError(
                f"member '{self.owner}': no {SINGLE} or {INDEX} in {self.directory}; "
                "save the model with save_pretrained (safetensors)"
            )
        return {key: single for key in self._open(single).keys()}

    def _open(self, path: Path):  # type: ignore[no-untyped-def]
        if path not in self._handles:
            try:
                self._handles[path] = safe_open(str(path), framework="pt", device="cpu")
            except (SafetensorError, OSError, ValueError) as exc:
                raise PoolError(f"member '{self.owner}': cannot read {path} ({exc}); the file is corrupt or truncated") from None
        return self._handles[path]

    def keys(self) -> list[str]:
        return sorted(self._file_of)

    def info(self, key: str) -> TensorInfo:
        piece = self._open(self._file_of[key]).get_slice(key)
        return TensorInfo(tuple(piece.get_shape()), str(piece.get_dtype()))

    def tensor(self, key: str) -> torch.Tensor:
        try:
            return self._open(self._file_of[key]).get_tensor(key)
        except (SafetensorError, OSError, ValueError) as exc:
            raise PoolError(f"member '{self.owner}': cannot read tensor '{key}' ({exc})") from None
