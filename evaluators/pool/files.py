"""One model directory's weights: a single ``model.safetensors`` or shards listed in an index.

Pickle weights (``pytorch_model.bin``, sharded or not) are opened only with ``allow_pickle``
(the CLI's ``--allow-pickle``), and then with ``torch.load(weights_only=True)``; without it a
directory holding only those is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from evaluators.errors import PoolError
from evaluators.pool.pickle_io import PickleFile
from evaluators.pool.safetensors_io import SafetensorsFile

SINGLE = "model.safetensors"
PICKLED = "pytorch_model.bin"


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str


class CheckpointFiles:
    """The safetensors files of one model directory, read one tensor at a time."""

    def __init__(
        self, directory: Path, owner: str, single: str = SINGLE, pickled: str = PICKLED, allow_pickle: bool = False
    ) -> None:
        self.directory = directory
        self.owner = owner
        self._file_of: dict[str, SafetensorsFile | PickleFile] = {}
        names = [single, *([pickled] if allow_pickle else [])]
        for name in names:
            index_path, single_path = directory / f"{name}.index.json", directory / name
            if index_path.is_file():
                self._load_index(index_path)
                return
            if single_path.is_file():
                handle = self._open(single_path)
                self._file_of = {key: handle for key in handle.entries}
                return
        self._refuse(single, pickled)

    def _open(self, path: Path) -> SafetensorsFile | PickleFile:
        return PickleFile(path, self.owner) if path.suffix == ".bin" else SafetensorsFile(path, self.owner)

    def _load_index(self, index_path: Path) -> None:
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise PoolError(f"member '{self.owner}': {index_path} is not a valid safetensors index ({exc})") from None
        handles: dict[str, SafetensorsFile | PickleFile] = {}
        for key, shard in weight_map.items():
            if shard not in handles:
                path = self.directory / shard
                if not path.is_file():
                    raise PoolError(
                        f"member '{self.owner}': shard {shard} listed in {index_path.name} is missing from {self.directory}; "
                        "restore it, or re-save the model (save_pretrained writes every shard and the index)"
                    )
                handles[shard] = self._open(path)
            if key not in handles[shard].entries:
                raise PoolError(f"member '{self.owner}': {shard} lacks tensor '{key}' that {index_path.name} lists")
            self._file_of[key] = handles[shard]

    def _refuse(self, single: str, pickled: str) -> None:
        pickles = [p for p in (pickled, f"{pickled}.index.json") if (self.directory / p).exists()]
        if pickles:
            raise PoolError(
                f"member '{self.owner}': {self.directory} holds only pickle weights ({pickles[0]}), which can run code "
                "when loaded; convert them to safetensors (save_pretrained does), or pass --allow-pickle to read "
                "them with torch.load(weights_only=True)"
            )
        raise PoolError(
            f"member '{self.owner}': no {single} or {single}.index.json in {self.directory}; "
            "save the model with save_pretrained (safetensors)"
        )

    def keys(self) -> list[str]:
        return sorted(self._file_of)

    def info(self, key: str) -> TensorInfo:
        entry = self._file_of[key].entries[key]
        return TensorInfo(entry.shape, str(entry.dtype).removeprefix("torch."))

    def tensor(self, key: str) -> torch.Tensor:
        """A private copy of ``key``, in its stored dtype."""
        return self._file_of[key].read(key)

    def view(self, key: str) -> torch.Tensor:
        """``key`` over the file's shared memory map (zero-copy, read-only by contract)."""
        return self._file_of[key].view(key)

    def release(self, key: str) -> None:
        """Drop ``key``'s pages from this process's mapping (see ``SafetensorsFile.release``)."""
        self._file_of[key].release(key)

    def map(self, populate: bool) -> None:
        """Map every file of the directory; with ``populate``, read them in now."""
        for handle in dict.fromkeys(self._file_of.values()):
            handle.map(populate)

    def nbytes(self, key: str) -> int:
        return self._file_of[key].entries[key].length
