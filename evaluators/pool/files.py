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

from evaluators.core.errors import PoolError
from evaluators.pool.pickle_io import PickleFile
from evaluators.pool.safetensors_io import SafetensorsFile

SINGLE = "model.safetensors"
PICKLED = "pytorch_model.bin"


@dataclass(frozen=True)
class TensorInfo:
    """A tensor's shape and stored dtype (the ``torch.dtype`` name without ``torch.``), known without reading its
    data."""

    shape: tuple[int, ...]
    dtype: str


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".index.json")


class CheckpointFiles:
    """The weight files of one model directory, chosen exactly as ``from_pretrained`` chooses them, read one
    tensor at a time.

    Order (transformers 5, ``_get_resolved_checkpoint_files``): the file ``config.json`` names in
    ``transformers_weights``; else ``model.safetensors``; else ``model.safetensors.index.json``; then,
    only with ``allow_pickle``, ``pytorch_model.bin`` and its index. A sharded checkpoint is every
    tensor of every shard its index lists, as transformers loads them. ``ignored`` lists the other
    weight-like files, which transformers does not read either.
    """

    def __init__(
        self, directory: Path, owner: str, single: str = SINGLE, pickled: str = PICKLED, allow_pickle: bool = False
    ) -> None:
        self.directory = directory
        self.owner = owner
        self._file_of: dict[str, SafetensorsFile | PickleFile] = {}
        self.paths: list[Path] = []
        names = [
            self._explicit(),
            single,
            f"{single}.index.json",
            *([pickled, f"{pickled}.index.json"] if allow_pickle else []),
        ]
        chosen = next((directory / n for n in names if n and (directory / n).is_file()), None)
        if chosen is None:
            self._refuse(single, pickled)
        elif chosen.name.endswith(".index.json"):
            self._load_index(chosen)
        else:
            self._add(chosen)
        used = {*self.paths, *([chosen] if chosen else [])}
        self.ignored = sorted(p.name for p in directory.iterdir() if p.name.endswith(WEIGHT_SUFFIXES) and p not in used)

    def _explicit(self) -> str | None:
        """The weights file a config names (``transformers_weights``), which transformers loads before any other."""
        try:
            name = json.loads((self.directory / "config.json").read_text()).get("transformers_weights")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None
        if name is not None and (not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts):
            raise PoolError(
                f"member '{self.owner}': config.json names transformers_weights {name!r}, not a file inside {self.directory}; fix it"
            )
        return name

    def _open(self, path: Path) -> SafetensorsFile | PickleFile:
        return PickleFile(path, self.owner) if path.suffix == ".bin" else SafetensorsFile(path, self.owner)

    def _add(self, path: Path) -> None:
        """Every tensor of one weights file; a name in two shards is an error (which would win is not defined)."""
        handle = self._open(path)
        twice = sorted(set(handle.entries) & set(self._file_of))
        if twice:
            raise PoolError(
                f"member '{self.owner}': tensor '{twice[0]}' is in two shards of {self.directory}; re-save the model"
            )
        self._file_of.update({key: handle for key in handle.entries})
        self.paths.append(path)

    def _load_index(self, index_path: Path) -> None:
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise PoolError(f"member '{self.owner}': {index_path} is not a valid safetensors index ({exc})") from None
        for shard in shards:
            path = self.directory / shard
            if not path.is_file():
                raise PoolError(
                    f"member '{self.owner}': shard {shard} listed in {index_path.name} is missing from {self.directory}; "
                    "restore it, or re-save the model (save_pretrained writes every shard and the index)"
                )
            self._add(path)
        absent = sorted(k for k, shard in weight_map.items() if k not in self._file_of)
        if absent:
            raise PoolError(
                f"member '{self.owner}': {index_path.name} lists tensor '{absent[0]}', which no shard holds; re-save the model"
            )

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
        """Every tensor name the directory's weight files hold, sorted."""
        return sorted(self._file_of)

    def info(self, key: str) -> TensorInfo:
        """``key``'s shape and stored dtype; reads no tensor data."""
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
        """``key``'s size in bytes, as stored."""
        return self._file_of[key].entries[key].length
