"""``python -m experiments.replications.readme`` (``make readme``): README's measured blocks, regenerated here.

README.md quotes measured numbers only between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``; this
fills each block from what this machine built and ran, and says where and when:

- ``toy-scores``: the toy pool's score table (``toy/manifest.json``, written by ``mergefront toy build``);
- ``demo``: the demo run's size, times, verdict and held-out agreement (``runs/toy``, ``make demo``);
- ``recycle``, ``adapters``, ``transfer``: each replication's ``runs/NAME/results.md``, when that run exists
  (``make NAME`` first); otherwise the block keeps its last measurement and the command says so.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from evaluators.core.errors import ConfigError
from optimizer.front.table import merge_verdict
from optimizer.store.rows import TrialState
from optimizer.store.trials import FRONT, TRIALS, read_trials
from toy.scores import cached_scores, trade_offs

REPLICATIONS = ("recycle", "adapters", "transfer")


def machine(day: datetime.date | None = None) -> str:
    """Where a block was measured: the CPU's model and vector extension, its CPU count, torch, and ``day`` (the
    measurement's date; default today)."""
    model = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor()
    )
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model} ({capability}), {os.cpu_count()} CPUs, torch {torch.__version__}, {day or datetime.date.today()}"


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.is_file() else []


def toy_block(toy_dir: Path, tasks_dir: Path) -> str:
    """The toy pool's score table (search split, ``acc``), the best of each column in bold, and its trade-off
    line."""
    scores = cached_scores(toy_dir, tasks_dir)
    skills = list(next(iter(scores.values())))
    best = {s: max(row[s] for row in scores.values()) for s in skills}
    lines = ["| member | " + " | ".join(skills) + " |", "|---" * (len(skills) + 1) + "|"]
    for member, row in scores.items():
        cells = [f"**{row[s]:.3f}**" if row[s] == best[s] else f"{row[s]:.3f}" for s in skills]
        lines.append(f"| {member} | " + " | ".join(cells) + " |")
    each, none_all = trade_offs(scores)
    lines += [
        "",
        (
            f"Every member is best at some skill: {'yes' if each else 'no'}; none is best at every skill:"
            f" {'yes' if none_all else 'no'}. Built and scored on {machine()}."
        ),
    ]
    return "\n".join(lines)


def demo_block(run_dir: Path) -> str:
    """The demo run in numbers: trials, failures, its span, median merge and evaluation seconds, the front's size,
    the verdict the search printed, and how far the front's held-out scores are from its searched ones (when the
    experiment gives one held-out task per objective, in order, as the demo does)."""
    trials, front = read_trials(run_dir, TRIALS), read_trials(run_dir, FRONT)
    timings = trials.complete().timings()
    last = max(r.finished_at for r in trials.records())  # the run's date, not today's
    objectives, held_out = trials.columns.objectives, trials.columns.held_out
    pairs = list(zip(objectives, held_out, strict=True)) if len(objectives) == len(held_out) else []
    gaps = [abs(r.held_out[h] - r.scores[o]) for r in front.records() for o, h in pairs if h in r.held_out]
    lines = [
        (
            f"Measured on {machine(last.date())}: {len(trials)} trials, {trials.count(TrialState.FAIL)} failed, in"
            f" {trials.span_seconds():.0f} s from the first trial's start to the last one's end. The median trial took"
            f" {statistics.median(timings['merge_seconds']):.3f} s to merge and"
            f" {statistics.median(timings['eval_seconds']):.1f} s to evaluate. The front has {len(front)} points;"
            " the search ends with this verdict:"
        ),
        "",
        "```",
        merge_verdict(trials, front),
        "```",
    ]
    if gaps:
        lines += [
            "",
            (
                "The front's held-out scores (other examples of the same skills) differ from its searched scores by"
                f" {statistics.median(gaps):.3f} in the median and {max(gaps):.3f} at most."
            ),
        ]
    return "\n".join(lines)


def replication_block(run_dir: Path) -> str:
    """A replication's ``results.md`` without its title, its sections one level below README's replication
    section (``##`` becomes ``####``), and where and when it was written (this machine, the file's date)."""
    results = run_dir / "results.md"
    text = re.sub(r"\A# .*\n+", "", results.read_text())
    day = datetime.date.fromtimestamp(results.stat().st_mtime)
    return re.sub(r"^## ", "#### ", text, flags=re.MULTILINE).rstrip() + f"\n\nWritten on {machine(day)}."


def fill(readme: str, name: str, body: str) -> str:
    """``readme`` with block ``name``'s content replaced by ``body``; ConfigError when README lacks the block."""
    pattern = re.compile(rf"(<!-- generated: {name} -->\n)(?:.*?\n)?(<!-- end: {name} -->)", re.DOTALL)
    if not pattern.search(readme):
        raise ConfigError(f"README.md has no block '{name}': add <!-- generated: {name} --> ... <!-- end: {name} -->")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), readme)


def main(argv: list[str] | None = None) -> int:
    """Regenerate the blocks whose sources exist; print which were filled and which were kept."""
    parser = argparse.ArgumentParser(prog="python -m experiments.replications.readme", description=__doc__)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the run directories (default runs/)")
    args = parser.parse_args(argv)
    sources: dict[str, tuple[Path, Callable[[], str]]] = {
        "toy-scores": (Path("toy/manifest.json"), lambda: toy_block(Path("toy"), Path("experiments/tasks/toy"))),
        "demo": (args.runs / "toy" / "trials.parquet", lambda: demo_block(args.runs / "toy")),
        **{n: (args.runs / n / "results.md", lambda n=n: replication_block(args.runs / n)) for n in REPLICATIONS},
    }
    readme = args.readme.read_text()
    try:
        for name, (source, body) in sources.items():
            if source.is_file():
                readme = fill(readme, name, body())
                print(f"{name}: regenerated from {source}")
            else:
                print(f"{name}: kept ({source} is missing)")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.readme.write_text(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
