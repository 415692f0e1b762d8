"""What the replications share: named merges scored on the search and the held-out split (the toy
tasks' ``report`` split) by one in-process worker, the greedy soup, a run's best trials, and the results
table and plot.

Every row is scored again here, on both splits, by the same worker code the search uses, so the
baselines and the searched merges are measured the same way (the search scores held-out tasks for
its front only).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from evaluators.core.environment import apply_process_env
from evaluators.core.errors import ConfigError
from evaluators.merge import MergePoint, MergeSpec
from evaluators.pool import load_pool
from evaluators.scoring.compare import Difference, paired_difference
from evaluators.worker import Worker
from optimizer.experiment.config import load_experiment
from optimizer.front.plots import save_static  # also selects matplotlib's file-only backend
from optimizer.store.rows import TrialSource
from optimizer.store.trials import TRIALS, read_trials

USED = 0.01  # a member "takes part" in a merge above this weight
SPLITS_NOTE = (
    "Accuracy on the search split (what the searches saw) and on the held-out report split (other examples of the same"
    " skills, never seen by a search); macro = mean over the skills. The best value of each column is in bold."
)


def uniform(members: Sequence[str]) -> dict[str, float]:
    """Equal weights over ``members`` (the uniform soup)."""
    return {m: 1.0 / len(members) for m in members}


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (a macro-average over skills)."""
    return sum(values) / len(values)


@dataclass(frozen=True)
class Row:
    """One named merge: its weights (and knobs) and its scores per objective on both splits."""

    name: str
    weights: Mapping[str, float]
    search: Mapping[str, float]  # objective -> score on the search split
    held_out: Mapping[str, float]  # objective -> score on its held-out task
    knobs: Mapping[str, float] = field(default_factory=dict)
    held_out_samples: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # objective -> per example

    @property
    def search_macro(self) -> float:
        """Mean over the objectives on the search split."""
        return mean(list(self.search.values()))

    @property
    def held_out_macro(self) -> float:
        """Mean over the objectives on the held-out split."""
        return mean(list(self.held_out.values()))

    @property
    def used(self) -> int:
        """How many members get a weight above ``USED``."""
        return sum(abs(w) > USED for w in self.weights.values())


class SplitScorer:
    """One in-process worker for an experiment: its objectives on the search split, and each
    objective's held-out task (``held_out`` lists them in the objectives' order) on the held-out split."""

    def __init__(self, experiment_file: Path, merge: MergeSpec | None = None, pool_file: Path | None = None) -> None:
        experiment, pool = load_experiment(experiment_file)
        if pool_file is not None:
            pool = load_pool(pool_file)
        if len(experiment.held_out) != len(experiment.objectives):
            raise ConfigError(f"{experiment_file}: give one held-out task per objective, in the same order")
        update: dict[str, object] = {"bootstrap_iters": 0}
        if merge is not None:
            update["merge"] = merge
        self.worker = Worker(experiment.worker_spec(pool).model_copy(update=update))
        self.objectives = experiment.labels
        self.held_out_tasks = [o.label for o in experiment.held_out]
        self.members = pool.names

    def search(self, weights: Mapping[str, float], knobs: Mapping[str, float] | None = None) -> dict[str, float]:
        """Scores of ``weights`` on the search split, per objective."""
        result = self.worker.evaluate(MergePoint(weights, knobs=knobs or {}))
        return {o: result.scores[o].value for o in self.objectives}

    def row(self, name: str, weights: Mapping[str, float], knobs: Mapping[str, float] | None = None) -> Row:
        """Score on both splits; the row records a weight for every member (0 when left out)."""
        weights = {m: float(weights.get(m, 0.0)) for m in self.members}
        point = MergePoint(weights, knobs=knobs or {})
        scores = self.worker.score_held_out(point).scores
        pairs = list(zip(self.objectives, self.held_out_tasks, strict=True))
        held_out = {o: scores[t].value for o, t in pairs}
        samples = {o: scores[t].per_sample for o, t in pairs}
        return Row(name, weights, self.search(weights, knobs), held_out, dict(knobs or {}), samples)


def compare(row: Row, other: Row, skill: str | None = None) -> Difference:
    """``row``'s held-out macro-average minus ``other``'s (or their difference on ``skill`` alone), with its paired
    bootstrap 95 % interval over the held-out examples (``evaluators.scoring.compare``)."""
    if skill is None:
        return paired_difference(row.held_out_samples, other.held_out_samples)
    return paired_difference({skill: row.held_out_samples[skill]}, {skill: other.held_out_samples[skill]})


COMPARISONS_NOTE = (
    "Differences of the macro-average on the held-out report split, with a paired bootstrap 95 % interval over its"
    " examples (each skill's examples resampled on their own, the same draw for both sides, 10,000 resamples);"
    " the verdict is read from the interval: beats (above 0), loses (below 0), ties (it contains 0)."
)


def comparisons_table(pairs: Sequence[tuple[Row, Row]], skill: str | None = None) -> str:
    """Markdown: one line per (row, rival): the held-out macro difference (or ``skill``'s alone), its 95 % interval
    and the verdict."""
    lines = [f"| comparison | held-out {skill or 'macro'} difference | 95 % interval | verdict |", "|---|---|---|---|"]
    for row, rival in pairs:
        d = compare(row, rival, skill)
        lines.append(
            f"| {row.name} vs {rival.name} | {d.estimate:+.3f} | [{d.low:+.3f}, {d.high:+.3f}] | {d.verdict} |"
        )
    return "\n".join(lines)


def greedy_soup(
    alone: Mapping[str, float], held_in: Callable[[dict[str, float]], float]
) -> tuple[dict[str, float], list[str]]:
    """Wortsman et al. (2022): rank the members by their own held-in score, start from the best,
    and add each next one to the uniform soup when that does not lower the soup's held-in score.

    ``alone`` is each member's own held-in score; ``held_in`` scores a weight vector. Returns the
    soup's weights and one line per decision.
    """
    ranked = sorted(alone, key=lambda m: -alone[m])  # stable: ties keep the pool's order
    soup, best = [ranked[0]], alone[ranked[0]]
    trace = [f"start with {ranked[0]} ({best:.3f})"]
    for member in ranked[1:]:
        score = held_in(uniform([*soup, member]))
        kept = score >= best
        trace.append(f"{'add' if kept else 'skip'} {member}: soup would score {score:.3f} vs {best:.3f}")
        if kept:
            soup, best = [*soup, member], score
    return uniform(soup), trace


@dataclass(frozen=True)
class Trial:
    """One stored trial as the results steps read it: its number, source, weights, knobs and signed macro."""

    number: int
    source: TrialSource
    weights: dict[str, float]
    knobs: dict[str, float]
    macro: float  # mean of the objectives, each signed by its direction


def ranked_trials(run_dir: Path) -> list[Trial]:
    """A run's complete full-fidelity trials, best macro-average (signed by direction) first."""
    table = read_trials(run_dir, TRIALS).full()
    columns = table.columns
    signs = [1.0 if d == "maximize" else -1.0 for d in columns.directions]
    trials = [
        Trial(
            r.trial,
            r.source,
            {m: r.weights[m] for m in columns.weights},
            {k: r.knobs[k] for k in columns.knobs},
            mean([s * r.scores[o] for s, o in zip(signs, columns.objectives, strict=True)]),
        )
        for r in table.records()
    ]
    return sorted(trials, key=lambda t: (-t.macro, t.number))


def _cells(values: Sequence[float], best: Sequence[float]) -> list[str]:
    return [f"**{v:.3f}**" if math.isclose(v, b) else f"{v:.3f}" for v, b in zip(values, best, strict=True)]


def scores_table(rows: Sequence[Row]) -> str:
    """Markdown: one line per row, the objectives then their macro-average on the search split, the
    same on the held-out split (headed ``(report)``, the toy split's name), and how many members take part; the
    best value of a column in bold."""
    objectives = list(rows[0].search)
    values = [
        [*(r.search[o] for o in objectives), r.search_macro, *(r.held_out[o] for o in objectives), r.held_out_macro]
        for r in rows
    ]
    best = [max(col) for col in zip(*values, strict=True)]
    head = ["merge", "members > 0.01", *objectives, "macro", *(f"{o} (report)" for o in objectives), "macro (report)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [
        f"| {r.name} | {r.used} | " + " | ".join(_cells(v, best)) + " |" for r, v in zip(rows, values, strict=True)
    ]
    return "\n".join(lines)


def weights_table(rows: Sequence[Row]) -> str:
    """Markdown: each row's weights (and knobs), two decimals, blank below ``USED``."""
    members = list(rows[0].weights)
    knobs = sorted({k for r in rows for k in r.knobs})
    head = ["merge", *members, *knobs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r.weights.get(m, 0.0):.2f}" if abs(r.weights.get(m, 0.0)) > USED else "" for m in members]
        cells += [f"{r.knobs[k]:.2f}" if k in r.knobs else "" for k in knobs]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_figure(rows: Sequence[Row], title: str) -> Figure:
    """Horizontal bars: each row's macro-average on the search split and on the held-out split."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    ys = range(len(rows))
    for offset, values, color, label in (
        (-0.2, [r.search_macro for r in rows], "#1f77b4", "search split"),
        (0.2, [r.held_out_macro for r in rows], "#ff7f0e", "held-out report split"),
    ):
        bars = ax.barh([y + offset for y in ys], values, height=0.4, color=color, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)  # the differences that matter are small
    ax.set_yticks(list(ys), [r.name for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("macro-average accuracy")
    ax.set_title(title, fontsize=10, pad=22)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def write_results(run_dir: Path, markdown: str, figure: Figure) -> tuple[Path, Path]:
    """``results.md`` and ``results.png`` in the run directory."""
    md, png = run_dir / "results.md", run_dir / "results.png"
    md.write_text(markdown.rstrip() + "\n")
    save_static(figure, png)
    return md, png


def main_of(
    prog: str, doc: str | None, experiment: str, runs: Mapping[str, str], results: Callable[..., str]
) -> Callable[..., int]:
    """The command line of one replication's results step: ``--experiment`` and one option per
    run directory (``runs``: option name -> default), passed to ``results`` in that order; the
    results go into the first run directory."""

    def main(argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc)
        parser.add_argument("--experiment", type=Path, default=Path(experiment))
        for option, default in runs.items():
            parser.add_argument(f"--{option}", type=Path, default=Path(default), help=f"default {default}")
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its notes on every in-process model, as the CLI does
        apply_process_env()
        dirs = [getattr(args, option.replace("-", "_")) for option in runs]
        try:
            print(results(args.experiment, *dirs))
        except ConfigError as exc:  # e.g. its pool not built yet: one line, as mergefront prints it
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        print(f"\nwritten: {dirs[0] / 'results.md'}, {dirs[0] / 'results.png'}")
        return 0

    return main
