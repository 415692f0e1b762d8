"""Merge throughput: streaming and resident linear merges against a memory copy, in one run.

Builds K members of a ~150M-parameter bf16 Llama locally (random weights, sharded like real
checkpoints), then prints, for each mode, the useful bytes moved per second, the memory-copy
bandwidth measured on the same machine in the same run, their ratio, and peak RSS.

    python bench/merge.py [--members 4] [--shard-mb 200] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from evaluators.merge import MergeSpec
from evaluators.merge.engine import plan_for, stream_merge
from evaluators.merge.point import MergePoint
from evaluators.pool import load_pool
from evaluators.resident import ResidentPool

GB = 1e9


def build_pool(root: Path, members: int, shard_mb: int) -> tuple[Path, int]:
    config = LlamaConfig(
        vocab_size=32000, hidden_size=768, intermediate_size=2560, num_hidden_layers=12,
        num_attention_heads=12, num_key_value_heads=12, tie_word_embeddings=False,
    )
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    lines = []
    for i in range(members):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=0.01)
        model.save_pretrained(root / f"m{i}", max_shard_size=f"{shard_mb}MB")
        lines.append(f"  - {{name: m{i}, path: m{i}}}")
    (root / "pool.yaml").write_text("members:\n" + "\n".join(lines) + "\n")
    return root / "pool.yaml", params


def rss_gb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / GB


def reset_peak_rss() -> None:
    """Linux: make VmHWM (the peak RSS) restart from the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gb() -> float:
    """Peak RSS since the last reset (VmHWM), which getrusage cannot give after a reset."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024 / GB


def best_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
    """The fastest of ``repeats`` timed calls (device work included)."""
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def memcpy_gbps(nbytes: int, device: torch.device) -> float:
    """Bytes read + written per second by a plain copy of ``nbytes``."""
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / best_seconds(lambda: dst.copy_(src), device) / GB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def streaming(pool_file: Path, out: Path) -> tuple[float, float, float]:
    """Seconds, RSS before, and peak RSS during a streaming linear merge into ``out``."""
    spec = MergeSpec()
    plan = plan_for(load_pool(pool_file), spec)
    weights = {m: 1.0 / len(plan.members) for m in plan.members}
    reset_peak_rss()
    before = rss_gb()
    start = time.perf_counter()
    stream_merge(plan, spec, MergePoint(weights), out)
    return time.perf_counter() - start, before, peak_rss_gb()


def resident(pool_file: Path, device: torch.device) -> tuple[float, float]:
    spec = MergeSpec()
    plan = plan_for(load_pool(pool_file), spec)
    pool = ResidentPool(plan, spec, device)
    targets = {k: torch.empty(x.sources.shape[1:], dtype=plan.dtype(k), device=device) for k, x in pool.inputs.items()}
    pool.bind(targets)
    weights = {m: 1.0 / len(plan.members) for m in plan.members}
    reset_peak_rss()
    return best_seconds(lambda: pool.merge_into(MergePoint(weights)), device), peak_rss_gb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--shard-mb", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pool_file, params = build_pool(root, args.members, args.shard_mb)
        k = args.members
        shard = max(p.stat().st_size for p in root.glob("m0/*.safetensors")) / GB
        print(f"pool: {k} members x {params / 1e6:.0f}M params, bf16, largest shard {shard:.3f} GB")

        seconds, before, peak = streaming(pool_file, root / "out")
        copy_cpu = memcpy_gbps(params * 4, torch.device("cpu"))
        moved = (k + 1) * params * 2  # read K bf16 members, write one bf16 model
        print(f"memory copy (cpu):  {copy_cpu:6.2f} GB/s (read + write)")
        print(
            f"streaming (cpu):    {moved / seconds / GB:6.2f} GB/s in {seconds:.2f} s, ratio {moved / seconds / GB / copy_cpu:.2f}; "
            f"peak RSS +{peak - before:.3f} GB over {before:.3f} GB = {(peak - before) / shard:.2f}x the largest shard"
        )

        seconds, peak = resident(pool_file, device)
        copy = copy_cpu if device.type == "cpu" else memcpy_gbps(params * 4, device)
        moved = (k * 4 + 2) * params  # read K float32 slices, write one bf16 model
        if device.type != "cpu":
            print(f"memory copy ({device.type}):  {copy:6.2f} GB/s")
        print(
            f"resident ({device.type}):     {moved / seconds / GB:6.2f} GB/s per trial merge in {seconds:.3f} s, "
            f"ratio {moved / seconds / GB / copy:.2f}; peak RSS while merging {peak:.2f} GB (the pool held in float32)"
        )


if __name__ == "__main__":
    main()
