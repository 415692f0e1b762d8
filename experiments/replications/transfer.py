"""``python -m experiments.replications.transfer``: the transfer experiment's results, after its search over λ.

Scores the three versions, version 1's and version 2's fine-tunes, version 1's diff applied to
version 2 and to version 0, and version 2 plus the best searched λ times the diff (by macro-average
on the search split), on both splits; and sets beside them the connectivity signal that
``mergefront pool check`` prints for the two transfers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evaluators.merge import MergeSpec
from evaluators.merge.engine import plan_for
from evaluators.merge.inspect import inspect_members
from evaluators.pool import load_pool
from experiments.replications.common import (
    SPLITS_NOTE,
    SplitScorer,
    main_of,
    mean,
    ranked_trials,
    rows_figure,
    scores_table,
    weights_table,
    write_results,
)
from optimizer.experiment.config import load_experiment
from optimizer.store.trials import FRONT, read_trials
from toy.replications import POOL_FILE

ROWS = {  # row name -> weights over the transfer pool's members (linear merge)
    "v0 (early checkpoint of v1)": {"v0": 1.0},
    "v1 (toy base)": {"v1": 1.0},
    "v1 fine-tuned": {"v1_ft": 1.0},
    "v2 (v1 trained further)": {"v2": 1.0},
    "v2 fine-tuned directly": {"v2_ft": 1.0},
    "v2 + v1's diff": {"v2_plus_diff": 1.0},
    "v0 + v1's diff": {"v0_plus_diff": 1.0},
}


def connectivity(pool_file: Path) -> list[str]:
    """Markdown lines: each transfer member's cosine, relative distance and pool check warning."""
    plan = plan_for(load_pool(pool_file), MergeSpec(method="linear"))
    lines = [
        "| transfer | cosine(target − source base, diff) | ‖target − source base‖ / ‖source base‖ | pool check says |",
        "|---|---|---|---|",
    ]
    for r in inspect_members(plan):
        if r.transfer is not None:
            lines.append(
                f"| {r.name} | {r.transfer.cosine:+.3f} | {r.transfer.relative_distance:.3f} | {r.transfer.warning or 'no warning'} |"
            )
    return lines


def lambda_front(run: Path) -> list[str]:
    """Markdown lines: the search's Pareto front over λ, by λ (search split, as the search measured it)."""
    front = read_trials(run, FRONT)
    columns = front.columns
    lines = ["| λ | " + " | ".join(columns.objectives) + " | macro |", "|" + "---|" * (len(columns.objectives) + 2)]
    for r in sorted(front.records(), key=lambda r: r.knobs["scale"]):
        scores = [r.scores[o] for o in columns.objectives]
        lines.append(
            f"| {r.knobs['scale']:.2f} | " + " | ".join(f"{v:.3f}" for v in scores) + f" | {mean(scores):.3f} |"
        )
    return lines


def results(experiment: Path, run: Path) -> str:
    pool_file = load_experiment(experiment)[0].pool.parent / POOL_FILE
    scorer = SplitScorer(experiment, merge=MergeSpec(method="linear"), pool_file=pool_file)
    best = ranked_trials(run)[0]
    lam = best.knobs["scale"]
    rows = [scorer.row(name, weights) for name, weights in ROWS.items()]
    # v2 + λ·diff as a linear merge of the pool's members: (1 − λ)·v2 + λ·(v2 + diff)
    rows.append(
        scorer.row(
            f"v2 + {lam:.2f} × v1's diff (searched, trial {best.number})", {"v2": 1.0 - lam, "v2_plus_diff": lam}
        )
    )
    by_name = {r.name: r for r in rows}
    direct, v2, good, bad = (
        by_name[n] for n in ("v2 fine-tuned directly", "v2 (v1 trained further)", "v2 + v1's diff", "v0 + v1's diff")
    )
    skill = next(
        o
        for o in direct.search
        if direct.search[o] - v2.search[o] == max(direct.search[k] - v2.search[k] for k in direct.search)
    )
    gain = direct.search[skill] - v2.search[skill]
    lines = [
        "# Fine-tuning transfer across base versions (toy scale)",
        "",
        f"Rows are linear merges of the transfer pool's members (see the weights). {SPLITS_NOTE}",
        "",
        scores_table(rows),
        "",
        "## Connectivity (`mergefront pool check`)",
        "",
        *connectivity(pool_file),
        "",
        "## Verdict",
        "",
        f"- Fine-tuning v2 directly raises {skill} from {v2.search[skill]:.3f} to {direct.search[skill]:.3f} (search split).",
        (
            f"- v2 + v1's diff reaches {good.search[skill]:.3f}: {_share(good.search[skill] - v2.search[skill], gain)} of that gain; "
            f"macro {good.search_macro:.3f} (report {good.held_out_macro:.3f}) against v2's {v2.search_macro:.3f} ({v2.held_out_macro:.3f})."
        ),
        f"- v0 + v1's diff reaches {bad.search[skill]:.3f} on {skill}, macro {bad.search_macro:.3f} (report {bad.held_out_macro:.3f}).",
        f"- The searched λ with the best macro-average, {lam:.2f}, gives macro {rows[-1].search_macro:.3f} (report {rows[-1].held_out_macro:.3f}).",
        "",
        "## The searched front over λ (v2 + λ × v1's diff, search split)",
        "",
        *lambda_front(run),
        "",
        "## Weights",
        "",
        weights_table(rows),
    ]
    write_results(run, "\n".join(lines), rows_figure(rows, "transfer: macro-average accuracy"))
    return "\n".join(lines)


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole > 0 else "n/a (no gain to recover)"


main = main_of(
    "experiments.replications.transfer", __doc__, "experiments/transfer.yaml", {"run": "runs/transfer"}, results
)


if __name__ == "__main__":
    sys.exit(main())
