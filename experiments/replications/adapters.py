"""``python -m experiments.replications.adapters``: the adapter experiment's results, after its search.

Scores the base, each LoRA adapter alone, their exact delta average (``linear``: Σ wᵢ sᵢ Bᵢ Aᵢ), their
factor-wise average (``lora_factorwise``: s (Σ wᵢ Bᵢ)(Σ wᵢ Aᵢ), AdaMix's one-module merge) and the
search's best trial (by the macro-average on the search split) under both, on both splits; then the
same two averages of lora0 and its twin from other A factors. The comparisons come with paired
bootstrap intervals on the held-out split.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from evaluators.merge import MergeSpec
from experiments.replications.common import (
    COMPARISONS_NOTE,
    SPLITS_NOTE,
    Row,
    SplitScorer,
    comparisons_table,
    main_of,
    ranked_trials,
    rows_figure,
    scores_table,
    uniform,
    weights_table,
    write_results,
)
from optimizer.experiment.config import load_experiment
from toy.replications.adapters import BASE_POOL, OTHER_INIT, PAIR_POOL

FACTORWISE = MergeSpec(method="lora_factorwise")


@dataclass(frozen=True)
class Rows:
    """The scored rows: the adapters' table (base, singles, averages, searched) and the different-init pair's."""

    singles: list[Row]
    exact: Row
    factorwise: Row
    searched: Row
    searched_factorwise: Row
    base: Row
    pair: list[Row]  # lora0, its twin, their exact and factor-wise averages

    @property
    def best_single(self) -> Row:
        """The single adapter a user would pick: the best by its search-split macro-average."""
        return max(self.singles, key=lambda r: r.search_macro)

    @property
    def table(self) -> list[Row]:
        return [self.base, *self.singles, self.exact, self.factorwise, self.searched, self.searched_factorwise]


def score_rows(experiment: Path, run: Path) -> Rows:
    """Every row, scored on both splits by in-process workers (one per pool file and merge method)."""
    folder = load_experiment(experiment)[0].pool.parent
    exact, factorwise = SplitScorer(experiment), SplitScorer(experiment, merge=FACTORWISE)
    members = exact.members
    singles = [exact.row(m, {m: 1.0}) for m in members]
    best = next(t for t in ranked_trials(run) if t.source.is_sampler)  # a proposed merge, not a baseline
    pair_exact = SplitScorer(experiment, pool_file=folder / PAIR_POOL)
    pair_factorwise = SplitScorer(experiment, merge=FACTORWISE, pool_file=folder / PAIR_POOL)
    first, twin = pair_exact.members
    pair = [
        pair_exact.row(first, {first: 1.0}),
        pair_exact.row(twin, {twin: 1.0}),
        pair_exact.row("pair, exact delta average", uniform(pair_exact.members)),
        pair_factorwise.row("pair, factor-wise average", uniform(pair_exact.members)),
    ]
    base = SplitScorer(experiment, pool_file=folder / BASE_POOL)
    return Rows(
        singles,
        exact.row("exact delta average", uniform(members)),
        factorwise.row("factor-wise average (AdaMix)", uniform(members)),
        exact.row(f"searched (TPE, exact), trial {best.number}", best.weights),
        factorwise.row(f"searched trial {best.number}, factor-wise", best.weights),
        base.row("base, no adapter", {base.members[0]: 1.0}),
        pair,
    )


def markdown(rows: Rows) -> str:
    """results.md: the two score tables, the weights, and the comparisons with their intervals."""
    best, (first, twin, pair_exact, pair_factorwise) = rows.best_single, rows.pair
    best_of_pair = max(first, twin, key=lambda r: r.search_macro)
    pairs = [
        (rows.exact, best),
        (rows.searched, best),
        (rows.factorwise, best),
        (pair_exact, best_of_pair),
        (pair_factorwise, pair_exact),
    ]
    return "\n".join(
        [
            "# Averaging LoRA adapters (toy scale)",
            "",
            (
                f"{len(rows.singles)} LoRA adapters on a base that never saw reverse or sort, forked from one adapter"
                f" trained on those skills, each trained on with its own data order and dropout. {SPLITS_NOTE}"
            ),
            "",
            scores_table(rows.table),
            "",
            f"lora0 and {OTHER_INIT} (the same trunk and fork data order and dropout, other A factors):",
            "",
            scores_table(rows.pair),
            "",
            "## Weights",
            "",
            weights_table(rows.table[1:]),
            "",
            "## Comparisons",
            "",
            (
                f"The averages against the best single adapter by search macro ({best.name}); the pair's exact"
                f" average against the better of its two adapters ({best_of_pair.name}), its factor-wise average"
                f" against its exact one. {COMPARISONS_NOTE}"
            ),
            "",
            comparisons_table(pairs),
        ]
    )


def results(experiment: Path, run: Path) -> str:
    """Score every row on both splits, compare the averages with the best single adapter, write results.md; returns it."""
    rows = score_rows(experiment, run)
    text = markdown(rows)
    write_results(run, text, rows_figure([*rows.table, *rows.pair[1:]], "LoRA adapters: macro-average accuracy"))
    return text


main = main_of(
    "experiments.replications.adapters", __doc__, "experiments/adapters.yaml", {"run": "runs/adapters"}, results
)


if __name__ == "__main__":
    sys.exit(main())
