"""One model directory's weights: a single ``model.safetensors`` or shards listed in an index.

Pickle weights (``*.bin``, ``*.pt``) are never opened: a directory holding only those is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluators.errors import PoolError
from evaluators.pool.safetensors_io import SafetensorsFile

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt")


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str


class CheckpointFiles:
    """The safetensors files of one model directory, read one tensor at a time."""

    def __init__(self, directory: Path, owner: str, single: str = SINGLE, index: str = INDEX) -> None:
        self.directory = directory
        self.owner = owner
        self._file_of: dict[str, SafetensorsFile] = {}
        index_path, single_path = directory / index, directory / single
        if index_path.is_file():
            self._load_index(index_path)
        elif single_path.is_file():
            handle = SafetensorsFile(single_path, owner)
            self._file_of = {key: handle for key in handle.entries}
        else:
            self._refuse(single, index)

    def _load_index(self, index_path: Path) -> None:
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise PoolError(f"member '{self.owner}': {index_path} is not a valid safetensors index ({exc})") from None
        handles: dict[str, SafetensorsFile] = {}
        for key, shard in weight_map.items():
            if shard not in handles:
                path = self.directory / shard
                if not path.is_file():
                    raise PoolError(
                        f"member '{self.owner}': shard {shard} listed in {index_path.name} is missing from {self.directory}"
                    )
                handles[shard] = SafetensorsFile(path, self.owner)
            if key not in handles[shard].entries:
                raise PoolError(f"member '{self.owner}': {shard} lacks tensor '{key}' that {index_path.name} lists")
            self._file_of[key] = handles[shard]

    def _refuse(self, single: str, index: str) -> None:
        pickles = [p for p in PICKLES if (self.directory / p).exists()]
        if pickles:
            raise PoolError(
                f"member '{self.owner}': {self.directory} holds only pickle weights ({pickles[0]}), which can run code "
                "when loaded; convert them to safetensors (save_pretrained does) and try again"
            )
        raise PoolError(
            f"member '{self.owner}': no {single} or {index} in {self.directory}; "
            "save the model with save_pretrained (safetensors)"
        )

    def keys(self) -> list[str]:
        return sorted(self._file_of)

    def info(self, key: str) -> TensorInfo:
        entry = self._file_of[key].entries[key]
        return TensorInfo(entry.shape, str(entry.dtype).removeprefix("torch."))

    def tensor(self, key: str) -> torch.Tensor:
        return self._file_of[key].read(key)
