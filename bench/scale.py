"""A real-size pool on this machine: memory, merge speed and worker start-up of a real search.

Builds (once, cached in --workdir) a pool whose float32 stack would not fit here: 4 members of a
~1.1B-parameter bf16 Llama (about 9 GB on disk), then runs `mergefront search` with 2 CPU workers
on tiny task limits, sampling the memory of the whole process tree (driver, Ray, workers) as it runs.
It prints, each against its yardstick measured in the same run:

- peak memory the search added: the sum of PSS over the search's processes (a page shared by
  several processes counts once in all), against pool bytes + workers × model bytes;
- the largest private memory of one process, against the pool's bytes in float32 (a float32 copy
  of the pool would show there);
- the per-trial merge (median), in bytes moved per second, against a one-thread memory copy;
- worker start-up (pool opened and read in, model built, tasks indexed), against one cold read of
  the pool's files (the page cache dropped for them first, with posix_fadvise).

    python bench/scale.py [--workdir .bench/scale] [--members 4] [--trials 6] [--limit 4]
                          [--shape 1b|small] [--device cpu|cuda] [--workers 2] [--gpu-fraction F]

On a GPU (``--device cuda --gpu-fraction 0.05``) the fraction caps what a worker may use of its GPU,
so a pool that would fit is made not to: ``auto`` then places it in host memory and streams it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from optimizer.store.trials import TRIALS, read_trials
from toy.tokenizer import build_tokenizer

GB = 1e9
TASKS = Path(__file__).resolve().parents[1] / "experiments" / "tasks" / "toy"
SHAPES = {
    "1b": {
        "vocab_size": 32000,
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "tie_word_embeddings": False,
    },  # TinyLlama-1.1B's shape
    "small": {
        "vocab_size": 32000,
        "hidden_size": 768,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 12,
        "tie_word_embeddings": False,
    },
}


def build_pool(workdir: Path, members: int, shape: str) -> Path:
    """Random bf16 members around one random base (cached: rebuilt only when the recipe changes)."""
    stamp = workdir / "recipe.json"
    recipe = json.dumps({"shape": SHAPES[shape], "members": members})
    if stamp.is_file() and stamp.read_text() == recipe:
        return workdir / "pool.yaml"
    torch.manual_seed(0)
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape], dtype="bfloat16"))
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    base = {name: torch.randn_like(p).mul_(0.02) for name, p in model.named_parameters()}
    tokenizer = build_tokenizer()
    for i in range(members):
        print(f"  writing member m{i} ...", flush=True)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(base[name]).add_(torch.randn_like(p), alpha=0.002)
        model.save_pretrained(workdir / f"m{i}", max_shard_size="2GB")
        tokenizer.save_pretrained(workdir / f"m{i}")
    (workdir / "pool.yaml").write_text(
        "members:\n" + "".join(f"  - {{name: m{i}, path: m{i}}}\n" for i in range(members))
    )
    stamp.write_text(recipe)
    return workdir / "pool.yaml"


def weight_files(workdir: Path) -> list[Path]:
    return sorted(workdir.glob("m*/*.safetensors"))


def drop_cache(paths: list[Path]) -> None:
    """Evict the files' clean pages from the page cache (no root needed), so the next read is cold."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cold_read_seconds(paths: list[Path]) -> float:
    drop_cache(paths)
    start = time.perf_counter()
    for path in paths:
        with path.open("rb", buffering=0) as fh:
            while fh.read(64 << 20):
                pass
    return time.perf_counter() - start


def copy_gbps() -> float:
    """One-thread memory copy (read + write bytes per second): the workers merge on one thread each."""
    torch.set_num_threads(1)
    a, b = torch.ones(1 << 30, dtype=torch.uint8), torch.empty(1 << 30, dtype=torch.uint8)
    best = min(_timed(lambda: b.copy_(a)) for _ in range(5))
    return 2 * a.numel() / best / GB


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def smaps(pid: int) -> tuple[int, int]:
    """(PSS, private) bytes of one process from /proc/PID/smaps_rollup; (0, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    kb = {k: int(v.split()[0]) for k, v in re.findall(r"^(\w+):\s+(\d+ kB)", text, re.MULTILINE)}
    return kb.get("Pss", 0) * 1024, (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024


class TreeMemory(threading.Thread):
    """Samples the process tree under ``pid`` twice a second: peak Σ PSS and peak private memory of one process."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_pss = self.peak_private = 0
        self.peak_private_name = ""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = [(p, *smaps(p.pid)) for p in procs]
            self.peak_pss = max(self.peak_pss, sum(pss for _, pss, _ in sizes))
            proc, _, private = max(sizes, key=lambda s: s[2])
            if private > self.peak_private:
                self.peak_private = private
                self.peak_private_name = _name(proc)


def _name(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:60] or proc.name()
    except psutil.Error:
        return "?"


def write_experiment(workdir: Path, pool: Path, args: argparse.Namespace) -> Path:
    path = workdir / "scale.yaml"
    cap = f", gpu_memory_fraction: {args.gpu_fraction}" if args.gpu_fraction else ""
    path.write_text(
        f"name: scale\npool: {pool}\ntasks_dir: {TASKS}\n"
        f"objectives:\n  - {{task: toy_add, limit: {args.limit}}}\n  - {{task: toy_sort, limit: {args.limit}}}\n"
        f"budget: {{trials: {args.trials}}}\nsampler: {{name: random}}\nevaluation: {{bootstrap_iters: 0}}\n"
        f"workers: {{count: {args.workers}, device: {args.device}, threads: 1, batch_size: 8, pool: auto{cap}}}\n"
    )
    return path


def run_search(workdir: Path, experiment: Path) -> tuple[TreeMemory, str, float]:
    cli = Path(sys.executable).with_name("mergefront")
    command = [str(cli), "search", str(experiment), "--runs-dir", str(workdir / "runs"), "--overwrite", "--no-progress"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    memory = TreeMemory(proc.pid)
    memory.start()
    output, _ = proc.communicate()
    memory.stop.set()
    memory.join()
    if proc.returncode != 0:
        raise SystemExit(f"the search failed (exit {proc.returncode}):\n{output}")
    return memory, output, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path(".bench/scale"))
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--limit", type=int, default=4, help="examples per task")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpu-fraction", type=float, default=None, help="cap on each worker's share of its GPU")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"pool in {args.workdir} (built once) ...", flush=True)
    pool = build_pool(args.workdir.resolve(), args.members, args.shape)
    files = weight_files(args.workdir)
    pool_bytes = sum(p.stat().st_size for p in files)
    model_bytes = pool_bytes / args.members
    cold = cold_read_seconds(files)
    copy = copy_gbps()
    drop_cache(files)  # the search starts cold: its workers read the pool in themselves
    print(f"running the search ({args.workers} workers on {args.device}, {args.trials} trials) ...", flush=True)
    memory, output, wall = run_search(args.workdir, write_experiment(args.workdir, pool, args))
    done = read_trials(args.workdir / "runs" / "scale", TRIALS).complete()
    merge = statistics.median(done.timings()["merge_seconds"])
    starts = [float(x) for x in re.findall(r"worker-\d+ ready on \S+ in ([\d.]+) s", output)]
    tiers = sorted(set(re.findall(r"pool tier (\w+)", output)))
    budget = pool_bytes + args.workers * model_bytes
    print(
        f"\npool: {args.members} x {model_bytes / GB:.2f} GB bf16 = {pool_bytes / GB:.2f} GB (its float32 stack: {2 * pool_bytes / GB:.1f} GB); "
        f"search: {len(done)} trials complete in {wall:.0f} s, pool tier {', '.join(tiers)}"
    )
    print(
        f"memory added (peak sum of PSS): {memory.peak_pss / GB:.2f} GB = {memory.peak_pss / budget:.2f} x "
        f"(pool + {args.workers} x model = {budget / GB:.2f} GB; host memory only)"
    )
    print(
        f"largest private memory of one process: {memory.peak_private / GB:.2f} GB ({memory.peak_private_name}); "
        f"a float32 copy of the pool would be {2 * pool_bytes / GB:.1f} GB"
    )
    rate = (pool_bytes + model_bytes) / merge / GB
    print(
        f"merge per trial (median): {merge:.2f} s = {rate:.2f} GB/s moved, {rate / copy:.2f} x a one-thread memory copy ({copy:.2f} GB/s)"
    )
    print(
        f"worker start-up: {', '.join(f'{s:.1f} s' for s in starts)} = {max(starts) / cold:.2f} x one cold read of the pool "
        f"({cold:.1f} s, {pool_bytes / cold / GB:.2f} GB/s)"
    )


if __name__ == "__main__":
    main()
