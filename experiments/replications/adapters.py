"""``python -m experiments.replications.adapters``: the adapter experiment's results, after its search.

Scores the toy base, each LoRA adapter alone, their exact delta average (``linear``: Σ wᵢ sᵢ Bᵢ Aᵢ),
their factor-wise average (``lora_factorwise``: s (Σ wᵢ Bᵢ)(Σ wᵢ Aᵢ), AdaMix's one-module merge) and
the search's best trial (by the macro-average on the search split) under both, on both splits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evaluators.merge import MergeSpec
from experiments.replications.common import (
    SPLITS_NOTE,
    SplitScorer,
    main_of,
    ranked_trials,
    rows_figure,
    scores_table,
    uniform,
    weights_table,
    write_results,
)
from optimizer.experiment.config import load_experiment
from toy.replications.adapters import BASE_POOL


def results(experiment: Path, run: Path) -> str:
    exact = SplitScorer(experiment)
    factorwise = SplitScorer(experiment, merge=MergeSpec(method="lora_factorwise"))
    base = SplitScorer(experiment, pool_file=load_experiment(experiment)[0].pool.parent / BASE_POOL)
    singles = [exact.row(m, {m: 1.0}) for m in exact.members]
    best = ranked_trials(run)[0]
    rows = [
        base.row("toy base, no adapter", {"toy-base": 1.0}),
        *singles,
        exact.row("exact delta average", uniform(exact.members)),
        factorwise.row("factor-wise average (AdaMix)", uniform(exact.members)),
        exact.row(f"searched (TPE, exact), best macro: trial {best.number}", best.weights),
        factorwise.row(f"searched trial {best.number}, factor-wise", best.weights),
    ]
    best_single = max(singles, key=lambda r: r.search_macro)
    lines = [
        "# Averaging LoRA adapters (toy scale)",
        "",
        f"{len(singles)} LoRA adapters on the toy base, one initialisation, different data orders, one skill mixture. {SPLITS_NOTE}",
        "",
        scores_table(rows),
        "",
        "## Weights",
        "",
        weights_table(rows[1:]),
        "",
        "## Verdict",
        "",
        *(
            f"- {r.name}: {r.search_macro - best_single.search_macro:+.3f} (search) and {r.held_out_macro - best_single.held_out_macro:+.3f}"
            f" (report) against the best single adapter by search macro ({best_single.name})."
            for r in rows[len(singles) + 1 :]
        ),
    ]
    write_results(run, "\n".join(lines), rows_figure(rows, "LoRA adapters: macro-average accuracy"))
    return "\n".join(lines)


main = main_of(
    "experiments.replications.adapters", __doc__, "experiments/adapters.yaml", {"run": "runs/adapters"}, results
)


if __name__ == "__main__":
    sys.exit(main())
