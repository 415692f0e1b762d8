"""Safetensors without surprises: a validating reader and a sharded writer.

The reader parses the header itself (8-byte length, JSON) and checks every offset against the
file size, so a truncated or corrupted file gets a clear error naming it (safetensors' own
``safe_open`` reports such files as a Rust panic or an opaque error). Tensors come two ways:
- ``view``: a zero-copy tensor over a read-only shared memory map of the file. Every process on a
  node that maps the file shares one copy of its pages, the page cache; ``release`` drops a
  tensor's pages from this process's mapping (the page cache keeps them while memory allows).
- ``read``: a private copy read with ``pread`` (for data kept apart from the file, e.g. on a GPU).
Writing goes through ``safetensors.torch.save_file`` (it writes from the tensors' memory, no copy).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from evaluators.core.errors import PoolError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """Where one tensor's bytes are in the file, from the validated header."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    length: int


class SafetensorsFile:
    """One ``.safetensors`` file: its validated header, and tensors read on demand."""

    def __init__(self, path: Path, owner: str) -> None:
        self.path = path
        self.owner = owner
        size = path.stat().st_size
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                self._fail(f"is {size} bytes long, too short for a safetensors header")
            n = int.from_bytes(prefix, "little")
            if n <= 1 or n > MAX_HEADER or 8 + n > size:
                self._fail(f"declares a {n}-byte header but the file has {size} bytes")
            try:
                header = json.loads(fh.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._fail("has a header that is not valid JSON")
        if not isinstance(header, dict):
            self._fail("has a header that is not a JSON object")
        header.pop("__metadata__", None)
        self.entries = {key: self._entry(key, spec, 8 + n, size) for key, spec in header.items()}
        self._map: mmap.mmap | None = None

    def _fail(self, problem: str) -> None:
        raise PoolError(
            f"member '{self.owner}': {self.path} {problem}; the file is corrupt or truncated: copy it again or re-save the model"
        )

    def _entry(self, key: str, spec: object, data_start: int, size: int) -> Entry:
        try:
            dtype = DTYPES[spec["dtype"]]  # type: ignore[index]
            shape = tuple(int(d) for d in spec["shape"])  # type: ignore[index]
            begin, end = (int(x) for x in spec["data_offsets"])  # type: ignore[index]
        except (KeyError, TypeError, ValueError):
            self._fail(f"has an invalid header entry for '{key}'")
        itemsize = torch.empty((), dtype=dtype).element_size()
        if end - begin != math.prod(shape) * itemsize or begin < 0 or data_start + end > size:
            self._fail(f"has data for '{key}' outside the file or of the wrong size")
        return Entry(dtype, shape, data_start + begin, end - begin)

    def read(self, key: str) -> torch.Tensor:
        """A private copy of ``key``, read with ``pread`` (no memory map); PoolError if the file ends early."""
        entry = self.entries[key]
        if entry.length == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        buffer = bytearray(entry.length)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            got = os.preadv(fd, [buffer], entry.start)
        finally:
            os.close(fd)
        if got != entry.length:
            self._fail(f"ended while reading '{key}'")
        return torch.frombuffer(buffer, dtype=entry.dtype).reshape(entry.shape)

    def map(self, populate: bool) -> None:
        """Map the whole file read-only and shared; ``populate`` reads it in now (one pass over the file)
        so that no later access faults, else pages come in on first touch."""
        if self._map is None:
            with self.path.open("rb") as fh:
                flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
                self._map = mmap.mmap(fh.fileno(), 0, flags=flags, prot=mmap.PROT_READ)

    def view(self, key: str) -> torch.Tensor:
        """``key`` as a tensor over the file's memory map (read-only by contract: never write to it)."""
        entry = self.entries[key]
        if entry.length == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        self.map(populate=False)
        with warnings.catch_warnings():  # torch warns that the map is read-only; we only read
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.frombuffer(self._map, dtype=entry.dtype, count=math.prod(entry.shape), offset=entry.start)
        return flat.view(entry.shape)

    def release(self, key: str) -> None:
        """Drop ``key``'s pages from this process's mapping; its views stay valid (pages fault back in)."""
        if self._map is None or self.entries[key].length == 0:
            return
        entry = self.entries[key]
        start = entry.start - entry.start % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, start, entry.start + entry.length - start)


class ShardedWriter:
    """Writes tensors into ``model-XXXXX-of-YYYYY.safetensors`` shards plus an index.

    Holds at most one shard in memory. Everything goes to a temporary sibling directory that
    replaces ``out_dir`` only on ``close``, so an interrupted write leaves nothing half-written.
    """

    def __init__(self, out_dir: Path, max_shard_bytes: int) -> None:
        self.out_dir = out_dir
        self.tmp = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.max_shard_bytes = max_shard_bytes
        self._shard: dict[str, torch.Tensor] = {}
        self._shard_bytes = 0
        self._files: list[list[str]] = []
        self.total_bytes = 0

    def add(self, key: str, tensor: torch.Tensor) -> None:
        """Queue ``tensor`` (moved to the CPU) under ``key``; the shard held is written first if it would overflow
        ``max_shard_bytes``."""
        size = tensor.numel() * tensor.element_size()
        if self._shard and self._shard_bytes + size > self.max_shard_bytes:
            self._flush()
        self._shard[key] = tensor.detach().to("cpu").contiguous()
        self._shard_bytes += size
        self.total_bytes += size

    def _flush(self) -> None:
        save_file(self._shard, str(self.tmp / f"shard-{len(self._files):05d}"), metadata={"format": "pt"})
        self._files.append(list(self._shard))
        self._shard, self._shard_bytes = {}, 0

    def write_file(self, name: str, text: str) -> None:
        """Write a non-weight file (config, model card) into the output directory."""
        (self.tmp / name).write_text(text)

    def copy_file(self, source: Path) -> None:
        """Copy a file (tokenizer, generation config) into the output directory, keeping its metadata."""
        shutil.copy2(source, self.tmp / source.name)

    def close(self) -> None:
        """Name the shards, write the index (when sharded), and move the directory into place."""
        if self._shard or not self._files:
            self._flush()
        count = len(self._files)
        names = (
            ["model.safetensors"]
            if count == 1
            else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        )
        weight_map = {}
        for i, (keys, name) in enumerate(zip(self._files, names, strict=True)):
            (self.tmp / f"shard-{i:05d}").rename(self.tmp / name)
            weight_map.update({k: name for k in keys})
        if count > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
            (self.tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        self.tmp.rename(self.out_dir)

    def abort(self) -> None:
        """Delete the temporary directory; ``out_dir`` is left as it was."""
        shutil.rmtree(self.tmp, ignore_errors=True)
