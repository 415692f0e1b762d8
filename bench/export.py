"""Export cost: `mergefront merge` against `mergekit-yaml` on the same merges, whole process each.

Builds a bf16 Llama base of ~270M parameters and 3 or 4 members (the base plus independent small
random perturbations, so task vectors are meaningful), then runs a `linear` merge and a
`task_arithmetic` merge with both tools, each as its own command line, exactly as a user would
(interpreter start, imports, reading, merging, writing safetensors). mergekit goes into its own
throwaway venv (cached, never a project dependency), with the recipes that compute what ours does:
`normalize: false` (the linear weights sum to 1, so normalizing would not change the merge),
`dtype: float32` (mergekit's compute dtype, as we accumulate in float32) and `out_dtype: bfloat16`.

    .venv/bin/python bench/export.py [--members 4] [--runs 3] [--workdir DIR] [--mergekit-venv DIR] [--keep]

How to read the table:
- wall s: median whole-process wall time over --runs timed runs, alternated ours/theirs, each tool
  after one untimed warm-up (page cache warm, inputs and outputs fit in memory). The output
  directory is removed and the disks synced before each run, outside the timing.
- peak RSS: median over the runs of the largest resident set: the larger of ru_maxrss (exact, the
  largest single process; read by a small launcher that spawns the tool and adds ~0.01 s and ~9 MB)
  and the sampled sum over the process tree (it matters only where a tool spawns children). RSS
  counts the pages of memory-mapped files too: a tool that maps its safetensors inputs shows what
  it touched of them (up to K+1 x 0.54 GB here) although that is page cache the kernel can drop.
- anon GB: median peak of the private memory (RssAnon summed over the tree, sampled every 0.1 s, so
  a spike shorter than that can be missed): the part that needs RAM of its own. `procs` is the most
  processes seen at once in a tree: 1 means the numbers are the tool's own process.
- mergekit/ours: above 1 means mergekit took longer (wall) or more memory than ours.
- outputs: every tensor of both directories compared in float32. `max |diff|` is the largest
  absolute difference, `differ` how many elements are not bit-equal, `> 1 ulp` how many differ by
  more than one bf16 ulp of the larger of the two values. Both tools accumulate in float32 in
  different orders and round once to bf16, so a value may land one ulp apart. Where a task-arithmetic
  result cancels to about zero, float32 leaves a residue of about 2^-24 of the operands, many bf16
  ulps of the tiny result: `of which > float32 noise` counts the elements beyond one ulp that also
  differ by more than 2^-23 of the tensor's largest magnitude. 0 there is the verdict "equal within
  bf16 rounding"; a real difference in the merge (weights, λ, base) shows up as millions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
MERGEFRONT = REPO / ".venv" / "bin" / "mergefront"
MODEL = {
    "vocab_size": 32000,
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "tie_word_embeddings": False,
}
PERTURBATION = 0.002  # std of each member's task vector; the base's weights have std 0.02
LINEAR = {3: (0.5, 0.3, 0.2), 4: (0.4, 0.3, 0.2, 0.1)}  # sum to 1, so mergekit's normalize is moot
TASK = {3: (0.5, 0.4, 0.3), 4: (0.5, 0.4, 0.3, 0.2)}
SCALE = 0.8  # λ of task arithmetic
GB = 1e9
# Runs the tool and writes its ru_maxrss (KiB; the largest process of its tree). A child's ru_maxrss
# starts at its parent's high-water RSS (fork and exec carry it over), so the tool must be spawned by
# this small process, not by the benchmark after it built checkpoints or compared outputs.
LAUNCHER = """import os, resource, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def build_checkpoints(root: Path, members: int) -> tuple[Path, list[Path]]:
    """Base and members as bf16 safetensors model directories; reused when ``root`` already holds this recipe."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    stamp = root / "recipe.json"
    recipe = json.dumps({"model": MODEL, "members": members, "perturbation": PERTURBATION}, sort_keys=True)
    base, paths = root / "base", [root / f"m{i}" for i in range(members)]
    if stamp.exists() and stamp.read_text() == recipe:
        print(f"[build] reusing the checkpoints in {root}", flush=True)
        return base, paths
    shutil.rmtree(root, ignore_errors=True)
    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**MODEL)).to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    print(f"[build] base: {params / 1e6:.0f}M parameters, bf16 ({time.perf_counter() - start:.0f} s)", flush=True)
    model.save_pretrained(base)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    for i, path in enumerate(paths):
        generator = torch.Generator().manual_seed(i + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                p.copy_(theta0[name].float() + PERTURBATION * noise)
        model.save_pretrained(path)
        print(f"[build] member m{i} = base + {PERTURBATION} N(0,1) ({time.perf_counter() - start:.0f} s)", flush=True)
    stamp.write_text(recipe)
    return base, paths


def write_inputs(root: Path, base: Path, members: list[Path], venv: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Pools and mergekit recipes of both merges; returns {merge: (our command, mergekit command)} without outputs."""
    n = len(members)
    names = [f"m{i}" for i in range(n)]
    linear_pool = {"name": "bench-linear", "members": [{"name": m, "path": str(p)} for m, p in zip(names, members)]}
    task_pool = {
        "name": "bench-task",
        "bases": {"base": {"path": str(base)}},
        "members": [{"name": m, "kind": "finetune", "path": str(p), "base": "base"} for m, p in zip(names, members)],
    }
    common = {"dtype": "float32", "out_dtype": "bfloat16"}
    linear_recipe = {
        "merge_method": "linear",
        "parameters": {"normalize": False},
        **common,
        "models": [{"model": str(p), "parameters": {"weight": w}} for p, w in zip(members, LINEAR[n])],
    }
    task_recipe = {
        "merge_method": "task_arithmetic",
        "base_model": str(base),
        "parameters": {"normalize": False, "lambda": SCALE},
        **common,
        "models": [{"model": str(p), "parameters": {"weight": w}} for p, w in zip(members, TASK[n])],
    }
    commands = {}
    for merge, pool, recipe, weights, extra in (
        ("linear", linear_pool, linear_recipe, LINEAR[n], []),
        ("task_arithmetic", task_pool, task_recipe, TASK[n], ["--scale", str(SCALE)]),
    ):
        (root / f"{merge}.pool.yaml").write_text(yaml.safe_dump(pool, sort_keys=False))
        (root / f"{merge}.mergekit.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        ours = [
            str(MERGEFRONT),
            "merge",
            "--pool",
            str(root / f"{merge}.pool.yaml"),
            "--method",
            merge,
            "--weights",
            ",".join(f"{m}={w}" for m, w in zip(names, weights)),
            *extra,
            "--force",
            "--out",
        ]
        theirs = [str(venv / "bin" / "mergekit-yaml"), str(root / f"{merge}.mergekit.yaml"), "--no-copy-tokenizer"]
        commands[merge] = (ours, theirs)
    return commands


def ensure_mergekit(venv: Path) -> str:
    """mergekit's environment, built by ``make`` (the Makefile pins mergekit and the CPU torch); returns the versions."""
    if venv == REPO / ".venv-mergekit":
        print("[mergekit] make .venv-mergekit/.installed (a few minutes the first time)", flush=True)
        subprocess.run(["make", "-C", str(REPO), "--quiet", ".venv-mergekit/.installed"], check=True)
    elif not (venv / "bin" / "mergekit-yaml").is_file():
        raise SystemExit(
            f"--mergekit-venv {venv}: no bin/mergekit-yaml there; omit the option to let make build .venv-mergekit"
        )
    probe = "import importlib.metadata as m; print(m.version('mergekit'), m.version('torch'))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _tree(pid: int) -> set[int]:
    """``pid`` and its descendants, from every /proc/*/stat (this kernel has no children file); ~10 ms a scan."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier += children
    return tree


def _rss(pids: set[int]) -> tuple[int, int]:
    """Summed RSS and anonymous RSS (bytes) of ``pids``; processes gone meanwhile count 0."""
    total = anon = 0
    for pid in pids:
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        anon += int(fields.get("RssAnon", "0 kB").split()[0]) * 1024
    return total, anon


@dataclass
class Run:
    wall_s: float
    peak_rss: int
    peak_anon: int
    procs: int


def measure(command: list[str], log: Path) -> Run:
    """Run ``command`` to completion: wall time, peak RSS (rusage or the sampled tree, the larger), peak anonymous
    RSS (sampled every 0.1 s, the tree rescanned every 2 s), processes seen at once."""
    peak = {"rss": 0, "anon": 0, "procs": 1}
    done, maxrss = threading.Event(), log.with_suffix(".maxrss")
    with log.open("w") as sink:
        start = time.perf_counter()
        launcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, str(maxrss), *command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

        def sample() -> None:
            tree, tick = set(), 0
            while not done.wait(0.1):
                tree = _tree(launcher.pid) - {launcher.pid} if tick % 20 == 0 else tree
                tick += 1
                rss, anon = _rss(tree)
                peak.update(rss=max(peak["rss"], rss), anon=max(peak["anon"], anon))
                peak["procs"] = max(peak["procs"], len(tree))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            code = launcher.wait()
        except BaseException:  # Ctrl-C: end the tool too, not only its launcher
            for pid in _tree(launcher.pid):
                os.kill(pid, signal.SIGKILL)
            raise
        finally:
            done.set()
        wall = time.perf_counter() - start
        sampler.join()
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise SystemExit(f"{' '.join(command)} exited with {code}; last lines of {log}:\n{tail}")
    return Run(wall, max(int(maxrss.read_text()) * 1024, peak["rss"]), peak["anon"], peak["procs"])


@dataclass
class Tool:
    name: str
    command: list[str]
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)


def bench_merge(merge: str, tools: list[Tool], out: Path, logs: Path, runs: int) -> None:
    """One untimed warm-up per tool, then ``runs`` timed rounds alternating the tools; each leaves its output."""
    for round_ in range(runs + 1):
        for tool in tools:
            target = out / f"{merge}.{tool.name}"
            shutil.rmtree(target, ignore_errors=True)
            os.sync()  # the previous run's writeback must not land in this run's time
            run = measure([*tool.command, str(target)], logs / f"{merge}.{tool.name}.{round_}.log")
            label = "warm-up" if round_ == 0 else f"run {round_}/{runs}"
            rss, anon = run.peak_rss / GB, run.peak_anon / GB
            print(
                f"[{merge}] {tool.name:10} {label:8} {run.wall_s:6.2f} s  RSS {rss:5.2f} GB  anon {anon:5.2f} GB",
                flush=True,
            )
            if round_:
                tool.runs.append(run)


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory, over all its shards (the tools shard at different sizes)."""
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(shard))
    return tensors


def compare(ours: Path, theirs: Path) -> str:
    """Two lines: max |diff|, elements not bit-equal, beyond one bf16 ulp and beyond float32 noise, the verdict."""
    a, b = _tensors(ours), _tensors(theirs)
    if a.keys() != b.keys():
        only_ours, only_theirs = sorted(a.keys() - b.keys())[:5], sorted(b.keys() - a.keys())[:5]
        return f"tensor names differ: only ours {only_ours}, only mergekit {only_theirs}"
    dtypes = {str(t.dtype) for t in (*a.values(), *b.values())}
    max_diff, differ, past_ulp, past_noise, total = 0.0, 0, 0, 0, 0
    for name, x in a.items():
        x, y = x.float(), b[name].float()
        diff = (x - y).abs()
        _, exponent = torch.frexp(torch.maximum(x.abs(), y.abs()))
        ulp = torch.ldexp(torch.ones_like(x), (exponent - 8).clamp(min=-133))  # bf16 has 8 significant bits
        # a result that cancels to ~0 keeps float32 residue of its operands (~2^-24 of them), not of itself
        noise = 2.0**-23 * max(x.abs().max().item(), y.abs().max().item())
        max_diff = max(max_diff, diff.max().item())
        differ += int((diff > 0).sum())
        past_ulp += int((diff > ulp).sum())
        past_noise += int(((diff > ulp) & (diff > noise)).sum())
        total += x.numel()
    verdict = "equal within bf16 rounding" if past_noise == 0 else "NOT equal within bf16 rounding"
    head = f"{len(a)} tensors, {total / 1e6:.0f}M elements, {', '.join(sorted(dtypes))}, max |diff| {max_diff:.3g}"
    tail = f"differ {differ} ({differ / total:.3%}), > 1 ulp {past_ulp}, of which > float32 noise {past_noise}"
    return f"{head}\n    {tail}: {verdict}"


def report(merge: str, ours: Tool, theirs: Tool, outputs: str) -> None:
    """One merge's table: medians, every timed run (to see the noise), the ratios and the output check."""
    print(f"\n{merge}")
    print(f"  {'tool':10} {'wall s':>7} {'runs':>32} {'peak RSS GB':>12} {'anon GB':>8} {'procs':>6}")
    for tool in (ours, theirs):
        walls = " ".join(f"{r.wall_s:.2f}" for r in tool.runs)
        procs = max(r.procs for r in tool.runs)
        rss, anon = tool.median("peak_rss") / GB, tool.median("peak_anon") / GB
        print(f"  {tool.name:10} {tool.median('wall_s'):7.2f} {walls:>32} {rss:12.2f} {anon:8.2f} {procs:6}")
    ratios = {attr: theirs.median(attr) / ours.median(attr) for attr in ("wall_s", "peak_rss", "peak_anon")}
    wall, rss, anon = ratios["wall_s"], ratios["peak_rss"], ratios["peak_anon"]
    print(f"  mergekit/ours: wall {wall:.2f}x, peak RSS {rss:.2f}x, anon {anon:.2f}x")
    print(f"  outputs: {outputs}")


def main() -> int:
    """Install mergekit, build (or reuse) the checkpoints, time both merges with both tools, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, choices=(3, 4), default=4, help="members merged (default 4)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool and merge (default 3)")
    parser.add_argument("--workdir", type=Path, help="checkpoints and outputs (kept; its checkpoints are reused)")
    parser.add_argument(
        "--mergekit-venv",
        type=Path,
        default=REPO / ".venv-mergekit",
        help="a venv with mergekit (default: the one `make test-mergekit` builds)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary workdir")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not MERGEFRONT.exists():
        raise SystemExit(f"{MERGEFRONT} is missing; run `make install` first")
    venv = args.mergekit_venv.resolve()
    version = ensure_mergekit(venv)
    root = (args.workdir or Path(tempfile.mkdtemp(prefix="mergefront-export-bench-"))).resolve()
    try:
        base, members = build_checkpoints(root / "checkpoints", args.members)
        commands = write_inputs(root, base, members, venv)
        (root / "out").mkdir(exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        mergekit, torch_version = version.split()
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"[bench] mergekit {mergekit} (torch {torch_version}), workdir {root}, load average {load}", flush=True)
        results = []
        for merge, (ours_cmd, theirs_cmd) in commands.items():
            ours, theirs = Tool("mergefront", ours_cmd), Tool("mergekit", theirs_cmd)
            bench_merge(merge, [ours, theirs], root / "out", root / "logs", args.runs)
            outputs = compare(root / "out" / f"{merge}.mergefront", root / "out" / f"{merge}.mergekit")
            results.append((merge, ours, theirs, outputs))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\n{args.members} members, {args.runs} timed runs per tool and merge (medians); load average now {load}")
        for result in results:
            report(*result)
    finally:
        if not (args.keep or args.workdir):
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
