"""``python -m experiments.replications.recycle``: the recycling experiment's results, after its two searches.

Scores every single checkpoint, the uniform soup, the greedy soup and the best merge (by the
macro-average on the search split) of the Pareto search and of the scalarised CMA-ES search, on
both splits; compares each best merge with every baseline on the held-out split (paired bootstrap
95 % intervals), and counts the checkpoints each best merge gives weight.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from experiments.replications.common import (
    COMPARISONS_NOTE,
    SPLITS_NOTE,
    Row,
    SplitScorer,
    compare,
    comparisons_table,
    greedy_soup,
    main_of,
    mean,
    ranked_trials,
    rows_figure,
    scores_table,
    uniform,
    weights_table,
    write_results,
)

TOP = 5  # how many of a search's best trials the weight count covers
USED_HERE = 0.05  # a member "carries weight" in a merge above this


def _carrying(weights: Mapping[str, float]) -> int:
    """How many members carry weight above ``USED_HERE``."""
    return sum(w > USED_HERE for w in weights.values())


def _used_line(label: str, run_dir: Path) -> str:
    top = ranked_trials(run_dir)[:TOP]
    counts = ", ".join(f"{_carrying(t.weights)} (trial {t.number})" for t in top)
    return f"- {label}: members above {USED_HERE} in the {TOP} best trials by search macro: {counts}"


def _searched(scorer: SplitScorer, label: str, run: Path) -> tuple[Row, list[Row]]:
    """The search's best proposed merge (by search macro, the sampler's own trials only) and the rows to show: the
    best trial overall too, when a baseline (a single checkpoint, the uniform soup) came first."""
    ranked = ranked_trials(run)
    best, merge = ranked[0], next(t for t in ranked if t.source.is_sampler)
    merge_row = scorer.row(f"{label}: trial {merge.number}", merge.weights)
    if merge is best:
        return merge_row, [merge_row]
    return merge_row, [scorer.row(f"{label}, best trial: {best.number} ({best.source})", best.weights), merge_row]


def _verdict(merge: Row, rivals: list[Row]) -> str:
    """One line: how many baselines the merge beats on the held-out macro-average, and which it does not."""
    verdicts = {r.name: compare(merge, r).verdict for r in rivals}
    beaten = sum(v == "beats" for v in verdicts.values())
    rest = ", ".join(f"{v} {name}" for name, v in verdicts.items() if v != "beats")
    used = _carrying(merge.weights)
    return (
        f"- {merge.name} ({used} of {len(merge.weights)} checkpoints above {USED_HERE}) beats {beaten} of"
        f" {len(rivals)} baselines on the held-out macro-average" + (f"; it {rest}" if rest else "")
    )


def results(experiment: Path, pareto_run: Path, cmaes_run: Path) -> str:
    """Score the singles, soups and both searches' best merges, compare them, write results.md; returns it."""
    scorer = SplitScorer(experiment)
    singles = [scorer.row(m, {m: 1.0}) for m in scorer.members]
    soup, trace = greedy_soup(
        {r.name: r.search_macro for r in singles}, lambda w: mean(list(scorer.search(w).values()))
    )
    baselines = [*singles, scorer.row("uniform soup", uniform(scorer.members)), scorer.row("greedy soup", soup)]
    merges: list[Row] = []
    shown: list[Row] = []
    for label, run in (("Pareto (TPE)", pareto_run), ("scalarised (CMA-ES)", cmaes_run)):
        merge, rows = _searched(scorer, label, run)
        merges.append(merge)
        shown += rows
    rows = [*baselines, *shown]
    lines = [
        "# Recycling checkpoints (toy scale)",
        "",
        f"{len(scorer.members)} checkpoints, {len(scorer.objectives)} skills. {SPLITS_NOTE}",
        "",
        scores_table(rows),
        "",
        "## Each search's best merge against every baseline (held-out report split)",
        "",
        COMPARISONS_NOTE,
        "",
        comparisons_table([(m, r) for m in merges for r in baselines]),
        "",
        "## Verdict",
        "",
        *(_verdict(m, baselines) for m in merges),
        _used_line("Pareto (TPE)", pareto_run),
        _used_line("scalarised (CMA-ES)", cmaes_run),
        "",
        "## Weights",
        "",
        weights_table(rows),
        "",
        "## Greedy soup",
        "",
        *(f"- {line}" for line in trace),
    ]
    write_results(pareto_run, "\n".join(lines), rows_figure(rows, "recycling: macro-average accuracy"))
    return "\n".join(lines)


main = main_of(
    "experiments.replications.recycle",
    __doc__,
    "experiments/recycle.yaml",
    {"run": "runs/recycle", "cmaes-run": "runs/recycle-cmaes"},
    results,
)


if __name__ == "__main__":
    sys.exit(main())
