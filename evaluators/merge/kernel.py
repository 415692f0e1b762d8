"""The one place merged values are computed: a linear combination of source tensors in their stored
dtype, accumulated in float32 and written once into the output tensor in its own dtype.

    out = Σ_u coef[u]·source[u] + Σ_j weight_j·B_j @ A_j

Sources may have fewer leading rows than the output (a smaller vocabulary): their missing rows count
as zero. On CPU the sum runs in the fused C loop (``_fused.c``); on GPU as torch operations with the
same order (first source multiplied, the others fused-multiply-added). Low-rank terms are added to
row chunks of a float32 accumulator, so no member is ever densified and no float32 copy of a whole
tensor exists. Every caller (worker, export, every pool tier) goes through here, with the same
chunking, so their merges are bit-identical.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from evaluators.merge import _fused  # type: ignore[attr-defined]

CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2, torch.float64: 3}
CHUNK_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 24}  # float32 accumulator of a low-rank chunk: 1 MiB (L2) / 64 MiB


@dataclass(frozen=True)
class LowRankTerm:
    """``weight · B @ A`` with B [out, r] and A [r, in], in their stored dtype."""

    weight: float
    b: torch.Tensor
    a: torch.Tensor


@dataclass(frozen=True)
class Combination:
    """A merge result left as a recipe: coefficients over the pool's sources plus low-rank terms."""

    coef: tuple[float, ...]
    lowrank: tuple[LowRankTerm, ...] = ()


def combine_into(out: torch.Tensor, sources: Sequence[torch.Tensor | None], combo: Combination) -> None:
    """Write ``combo`` over ``sources`` into ``out`` (contiguous, any floating dtype, CPU or GPU).

    A source may be None where its coefficient is 0 (a tier need not fetch what a merge ignores).
    Raises ValueError if a needed source is missing or longer than ``out``.
    """
    if out.dim() == 0:  # a scalar is a one-element row
        out, sources = out.view(1), [None if s is None else s.view(1) for s in sources]
    if out.device.type == "cpu" and not out.is_contiguous():  # a slice of a fused tensor: same arithmetic, then copy
        dense = torch.empty(out.shape, dtype=out.dtype)
        combine_into(dense, sources, combo)
        out.copy_(dense)
        return
    used = [(s, c) for s, c in zip(sources, combo.coef, strict=True) if c != 0.0]
    if any(s is None or s.shape[1:] != out.shape[1:] or s.shape[0] > out.shape[0] for s, _ in used):
        raise ValueError("combine_into: a source with a non-zero coefficient is missing or does not fit the output")
    pairs = [(s, c) for s, c in used if s is not None]
    if not combo.lowrank:
        _linear(out, pairs)
        return
    rows = out.shape[0]
    step = max(1, CHUNK_ELEMENTS[out.device.type] // max(1, out[0].numel()))
    acc = torch.empty((min(step, rows), *out.shape[1:]), dtype=torch.float32, device=out.device)
    factors = [(t.weight, t.b, t.a.float()) for t in combo.lowrank]
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        chunk = acc[: r1 - r0]
        _linear(chunk, [(s[r0:r1], c) for s, c in pairs if s.shape[0] > r0])
        for weight, b, a in factors:
            chunk.addmm_(b[r0:r1].float(), a, alpha=weight)
        out[r0:r1].copy_(chunk)


def _linear(out: torch.Tensor, pairs: list[tuple[torch.Tensor, float]]) -> None:
    """out = Σ c·s, where each s covers a prefix of out's rows (zero beyond)."""
    length = out.shape[0]
    ends = sorted({min(s.shape[0], length) for s, _ in pairs} | {length})
    start = 0
    for end in ends:  # segments where the same sources are present
        if end > start:
            present = [(s[start:end], c) for s, c in pairs if s.shape[0] >= end]
            _segment(out[start:end], present)
        start = end


def _segment(out: torch.Tensor, pairs: list[tuple[torch.Tensor, float]]) -> None:
    if not pairs:
        out.zero_()
    elif out.device.type == "cpu" and _fusable(out) and all(_fusable(s) for s, _ in pairs):
        _fused.combine(
            out.data_ptr(),
            CODES[out.dtype],
            out.numel(),
            [s.data_ptr() for s, _ in pairs],
            [CODES[s.dtype] for s, _ in pairs],
            [float(c) for _, c in pairs],
            torch.get_num_threads(),
        )
    else:
        _torch_segment(out, pairs)


def _fusable(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype in CODES and t.is_contiguous()


def _torch_segment(out: torch.Tensor, pairs: list[tuple[torch.Tensor, float]]) -> None:
    """The same arithmetic with torch operations (GPU): float32 accumulator, sources in source order."""
    acc = out if out.dtype == torch.float32 else torch.empty(out.shape, dtype=torch.float32, device=out.device)
    for i, (s, c) in enumerate(zip(_on_device([s for s, _ in pairs], out.device), [c for _, c in pairs], strict=True)):
        if i == 0:
            acc.copy_(s)
            acc.mul_(c)
        else:
            acc.add_(s, alpha=c)
    if acc is not out:
        out.copy_(acc)


def _on_device(sources: list[torch.Tensor], device: torch.device) -> Iterator[torch.Tensor]:
    """Each source on ``device``. Host sources (a memory-mapped pool tier) go through pinned memory on a
    side stream, one source ahead: the copy of the next overlaps the arithmetic on this one, and the
    device holds at most two sources of one tensor at a time."""
    if device.type != "cuda":
        yield from sources
        return
    stream = torch.cuda.Stream(device)

    def start(s: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        if s.device == device:
            return s, None
        pinned = s.pin_memory()
        with torch.cuda.stream(stream):
            moved = pinned.to(device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(stream)
        return moved, ready

    ahead = start(sources[0])
    for i in range(len(sources)):
        moved, ready = ahead
        if i + 1 < len(sources):
            ahead = start(sources[i + 1])
        if ready is not None:
            torch.cuda.current_stream(device).wait_event(ready)
            moved.record_stream(torch.cuda.current_stream(device))
        yield moved
