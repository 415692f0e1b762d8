"""Merge throughput of every pool tier against a memory copy, in one run.

Builds K members of a ~150M-parameter bf16 Llama locally (random weights, sharded like real
checkpoints), then prints, per tier, the bytes a linear merge must move (K bf16 reads, one bf16
write) per second, the memory-copy bandwidth measured in the same run with the same threads,
their ratio, and the memory the merge holds. Also: the same merge written with torch operations
instead of the fused kernel (the measured reason ``_fused.c`` exists), a streamed export, and one
member read through our reader against ``safetensors.safe_open``. That last comparison is why we keep
our reader (writing goes through ``safetensors.torch.save_file``): both map the file, neither holds
private memory, and they read at the same speed (0.07 vs 0.09 s for 0.30 GB here), but on a truncated
shard safetensors says "incomplete metadata, file not fully covered" while ours names the member, the
file and the first tensor past the end, and says to copy the file again; ours also drops a tensor's
pages after use (the disk tier) and reads a private copy with ``pread`` (the device tier).

    python bench/merge.py [--members 4] [--shard-mb 200] [--device cpu|cuda] [--threads N]

The host tier's figure is with a warm page cache (the pool read once at start); the disk tier
releases each tensor's pages after its merge, so with enough memory the page cache still serves
it and with too little it reads the files.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

from evaluators.merge import MergeSpec
from evaluators.merge.engine import PoolMerger, plan_for, stream_merge
from evaluators.merge.point import MergePoint
from evaluators.pool import load_pool
from evaluators.pool.plan import PoolPlan
from evaluators.pool.safetensors_io import SafetensorsFile
from evaluators.pool.tiers import TIERS, pool_bytes

GB = 1e9


def build_pool(root: Path, members: int, shard_mb: int) -> tuple[Path, int]:
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=768,
        intermediate_size=2560,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
        tie_word_embeddings=False,
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def copy_gbps(nbytes: int, src: torch.device, dst: torch.device) -> float:
    """Bytes read + written per second by a plain copy of ``nbytes`` (host->device: bytes moved)."""
    a = torch.ones(nbytes, dtype=torch.uint8, device=src, pin_memory=src.type == "cpu" and dst.type == "cuda")
    b = torch.empty(nbytes, dtype=torch.uint8, device=dst)
    moved = nbytes if src != dst else 2 * nbytes
    return moved / best_seconds(lambda: b.copy_(a, non_blocking=True), dst if dst.type == "cuda" else src) / GB


def resident_gb() -> tuple[float, float]:
    """(private, file-backed) resident memory of this process: a memory-mapped pool is file-backed and
    shared with every process on the node that maps it; a private copy is counted once per process."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["RssAnon"].split()[0]) * 1024 / GB, int(fields["RssFile"].split()[0]) * 1024 / GB


def tier_merge(pool_file: Path, tier: str, device: torch.device) -> tuple[float, str]:
    """Seconds per linear merge written in place into bf16 targets (the tier's memory excluded), and what
    the tier holds in memory after a merge. A plan of its own: tiers map the plan's files."""
    plan = plan_for(load_pool(pool_file), MergeSpec())
    targets = {k: torch.empty(i.shape, dtype=plan.dtype(k), device=device) for k, i in plan.tensors.items()}
    anon, mapped = resident_gb()
    merger = PoolMerger(plan, MergeSpec(), TIERS.get(tier)(plan, device), device)
    point = MergePoint({m: 1.0 / len(plan.members) for m in plan.members})
    merger.merge_into(point, targets)  # first touch
    seconds = best_seconds(lambda: merger.merge_into(point, targets), device)
    anon2, mapped2 = resident_gb()
    return seconds, f"  holds: private +{anon2 - anon:.2f} GB, mapped (shared) +{mapped2 - mapped:.2f} GB"


def torch_ops_merge(plan: PoolPlan, chunk: int = 1 << 18) -> float:
    """The same host-tier merge as torch operations on cache-sized chunks (convert, then add)."""
    tier = TIERS.get("host")(plan, torch.device("cpu"))
    w = 1.0 / len(plan.members)
    acc, tmp = torch.empty(chunk), torch.empty(chunk)

    def merge() -> None:
        for key, info in plan.tensors.items():
            out = torch.empty(info.shape, dtype=plan.dtype(key)).view(-1)
            sources = [s.reshape(-1) for s in tier.fetch(key)]
            for i in range(0, out.numel(), chunk):
                n = min(chunk, out.numel() - i)
                a, t = acc[:n], tmp[:n]
                a.copy_(sources[0][i : i + n]).mul_(w)
                for s in sources[1:]:
                    a.add_(t.copy_(s[i : i + n]), alpha=w)
                out[i : i + n].copy_(a)

    return best_seconds(merge, torch.device("cpu"), repeats=3)


def line(label: str, moved: int, seconds: float, copy: float, extra: str = "") -> str:
    rate = moved / seconds / GB
    return f"{label:<34}{rate:7.2f} GB/s  {seconds:7.3f} s  ratio {rate / copy:5.2f}{extra}"


def with_safe_open(path: Path) -> list[torch.Tensor]:
    """Every tensor of ``path`` as ``safetensors.safe_open`` gives it."""
    with safe_open(str(path), framework="pt") as handle:
        return [handle.get_tensor(key) for key in handle.keys()]  # noqa: SIM118 (a handle, not a dict)


def with_our_reader(path: Path) -> list[torch.Tensor]:
    """Every tensor of ``path`` as our reader gives it: views over one shared, read-only memory map."""
    file = SafetensorsFile(path, "m0")
    return [file.view(key) for key in file.entries]


def read_member(files: list[Path]) -> str:
    """One member read two ways: each reader's seconds to sum every tensor, the private and the mapped
    (shared) memory it leaves in this process, and what each says about a truncated copy of a shard."""
    out = []
    for name, read in (("safetensors.safe_open", with_safe_open), ("our reader (view)", with_our_reader)):
        anon, mapped = resident_gb()
        start = time.perf_counter()
        held = [tensor for path in files for tensor in read(path)]
        total = sum(float(tensor.float().sum()) for tensor in held)
        seconds = time.perf_counter() - start
        anon2, mapped2 = resident_gb()
        out.append(
            f"{name:<34}{seconds:7.2f} s  private +{anon2 - anon:.2f} GB, mapped +{mapped2 - mapped:.2f} GB"
            f"  (checksum {total:.4e})"
        )
        del held
    truncated = files[0].with_name("truncated.safetensors")
    truncated.write_bytes(files[0].read_bytes()[: files[0].stat().st_size // 2])
    for name, read in (("safetensors.safe_open", with_safe_open), ("our reader (view)", with_our_reader)):
        try:
            read(truncated)
            said = "no error"
        except BaseException as error:  # noqa: BLE001 (safetensors raises a Rust panic, not an Exception)
            said = f"{type(error).__name__}: {error}"
        out.append(f"{name + ', half a shard:':<40}{said[:150]}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--shard-mb", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="CPU threads for merges and copies"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, cpu = torch.device(args.device), torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"building {args.members} members ...", flush=True)
        pool_file, params = build_pool(root, args.members, args.shard_mb)
        plan = plan_for(load_pool(pool_file), MergeSpec())
        moved = pool_bytes(plan) + params * 2  # read every source once, write one bf16 model
        print(
            f"pool: {args.members} members x {params / 1e6:.0f}M params, bf16, {pool_bytes(plan) / GB:.2f} GB; {args.threads} CPU thread(s)"
        )
        copy_cpu = copy_gbps(params * 2, cpu, cpu)
        print(f"{'memory copy (cpu)':<34}{copy_cpu:7.2f} GB/s (read + write)")
        if device.type == "cuda":
            copy_dev, copy_h2d = copy_gbps(params * 2, device, device), copy_gbps(params * 2, cpu, device)
            print(f"{'memory copy (device to device)':<34}{copy_dev:7.2f} GB/s (read + write)")
            print(f"{'memory copy (pinned host to device)':<34}{copy_h2d:7.2f} GB/s")
        for tier in ("host", "device", "disk"):
            seconds, held = tier_merge(pool_file, tier, device)
            copy = copy_cpu if device.type == "cpu" else (copy_dev if tier == "device" else copy_h2d)
            print(line(f"{tier} tier ({device.type}), in place", moved, seconds, copy, held))
        print(
            line(
                "torch operations (cpu, host tier)",
                moved,
                torch_ops_merge(plan),
                copy_cpu,
                "  (the fused kernel's reason)",
            )
        )
        start = time.perf_counter()
        stream_merge(plan, MergeSpec(), MergePoint({m: 1.0 / len(plan.members) for m in plan.members}), root / "out")
        print(
            line(
                "streamed export (cpu, to files)",
                moved,
                time.perf_counter() - start,
                copy_cpu,
                "  (writes the files too)",
            )
        )
        print(read_member(sorted((root / "m0").glob("model*.safetensors"))))


if __name__ == "__main__":
    main()
