"""``python -m experiments.replications.recycle``: the recycling experiment's results, after its two searches.

Scores every single checkpoint, the uniform soup, the greedy soup and the best trial (by the
macro-average on the search split) of the Pareto search and of the scalarised CMA-ES search, on
both splits, and counts the members each best merge uses.
"""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.replications.common import (
    SPLITS_NOTE,
    USED,
    Row,
    SplitScorer,
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


def _used_line(label: str, run_dir: Path) -> str:
    top = ranked_trials(run_dir)[:TOP]
    counts = ", ".join(f"{sum(w > USED for w in t.weights.values())} (trial {t.number})" for t in top)
    return f"- {label}: members above {USED} in the {TOP} best trials by search macro: {counts}"


MACROS = {"search": "search_macro", "report": "held_out_macro"}  # split, as the toy tasks name it -> Row property


def _beats(best: Row, rows: list[Row], split: str) -> str:
    macro = MACROS[split]
    value = getattr(best, macro)
    rival = max(rows, key=lambda r: getattr(r, macro))
    margin = value - getattr(rival, macro)
    verb = "beats" if margin > 0 else "does not beat"
    return f"{verb} the best baseline on the {split} split ({value:.3f} vs {rival.name} {getattr(rival, macro):.3f}, {margin:+.3f})"


def results(experiment: Path, pareto_run: Path, cmaes_run: Path) -> str:
    scorer = SplitScorer(experiment)
    singles = [scorer.row(m, {m: 1.0}) for m in scorer.members]
    soup, trace = greedy_soup(
        {r.name: r.search_macro for r in singles}, lambda w: mean(list(scorer.search(w).values()))
    )
    baselines = [*singles, scorer.row("uniform soup", uniform(scorer.members)), scorer.row("greedy soup", soup)]
    searched = []
    for label, run in (("Pareto (TPE)", pareto_run), ("scalarised (CMA-ES)", cmaes_run)):
        ranked = ranked_trials(run)
        best, merge = ranked[0], next(t for t in ranked if t.source.is_sampler)
        searched.append(scorer.row(f"{label}, best macro: trial {best.number} ({best.source})", best.weights))
        if merge is not best:
            searched.append(scorer.row(f"{label}, best proposed merge: trial {merge.number}", merge.weights))
    rows = [*baselines, *searched]
    lines = [
        "# Recycling checkpoints (toy scale)",
        "",
        f"{len(scorer.members)} checkpoints, {len(scorer.objectives)} skills. {SPLITS_NOTE}",
        "",
        scores_table(rows),
        "",
        "## Weights",
        "",
        weights_table(rows),
        "",
        "## Verdict",
        "",
        *(f"- {r.name} {_beats(r, baselines, 'search')}; it {_beats(r, baselines, 'report')}." for r in searched),
        _used_line("Pareto (TPE)", pareto_run),
        _used_line("scalarised (CMA-ES)", cmaes_run),
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
