"""``python -m experiments.replications.transfer``: the transfer experiment's results, after its search over λ.

Scores v1, its fine-tune, v2, v2 fine-tuned directly, the distant model, v1's diff applied to v2 and to
the distant model, and v2 plus the best searched λ times the diff (by macro-average on the search
split), on both splits; compares them with paired bootstrap intervals on the held-out split; sets beside
them the connectivity signal that ``mergefront pool check`` prints for the two transfers; and counts the
fine-tuning steps from v2 and from v2 + diff (``transfer_steps``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluators.merge import MergeSpec
from evaluators.merge.engine import plan_for
from evaluators.merge.inspect import inspect_members
from evaluators.pool import load_pool
from experiments.replications.common import (
    COMPARISONS_NOTE,
    SPLITS_NOTE,
    Row,
    SplitScorer,
    Trial,
    comparisons_table,
    main_of,
    mean,
    ranked_trials,
    rows_figure,
    scores_table,
    weights_table,
    write_results,
)
from experiments.replications.transfer_steps import Curve, score_curves, steps_lines, steps_verdict
from optimizer.experiment.config import load_experiment
from optimizer.store.trials import FRONT, read_trials
from toy.replications import POOL_FILE
from toy.replications.transfer import STEPS_POOL

V1, V1_FT, V2, V2_FT = "v1", "v1 fine-tuned", "v2 (v1 trained further)", "v2 fine-tuned directly"
V2_DIFF, DISTANT, DISTANT_DIFF = "v2 + v1's diff", "distant (v1's recipe, another init)", "distant + v1's diff"
ROWS = {  # row name -> weights over the transfer pool's members (linear merge)
    V1: {"v1": 1.0},
    V1_FT: {"v1_ft": 1.0},
    V2: {"v2": 1.0},
    V2_FT: {"v2_ft": 1.0},
    V2_DIFF: {"v2_plus_diff": 1.0},
    DISTANT: {"distant": 1.0},
    DISTANT_DIFF: {"distant_plus_diff": 1.0},
}
SEARCHED = "searched"  # key of the searched λ's row (its name says λ and the trial)
PAIRS = [  # the comparisons: (row, rival)
    (V2_DIFF, V2),
    (V2_DIFF, V2_FT),
    (DISTANT_DIFF, DISTANT),
    (SEARCHED, V2),
    (SEARCHED, V2_FT),
]
HALF = 0.5  # the transfer "works" when it recovers at least this share of the direct fine-tune's gain


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


def recovered(
    transfer: Sequence[float], base: Sequence[float], direct: Sequence[float], resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """The share of the direct fine-tune's gain that the transfer recovers on one task, (T − B) / (D − B), with a
    paired bootstrap 95 % interval (the same examples drawn for all three models): (estimate, low, high).

    The interval is NaN when a resample has no gain to recover (D ≤ B)."""
    t, b, d = (np.asarray(x, dtype=float) for x in (transfer, base, direct))
    estimate = float((t.mean() - b.mean()) / (d.mean() - b.mean())) if d.mean() > b.mean() else float("nan")
    draws = np.random.default_rng(seed).integers(0, len(t), size=(resamples, len(t)))
    gains = d[draws].mean(axis=1) - b[draws].mean(axis=1)
    if (gains <= 0).any():
        return estimate, float("nan"), float("nan")
    shares = (t[draws].mean(axis=1) - b[draws].mean(axis=1)) / gains
    low, high = np.percentile(shares, [2.5, 97.5])
    return estimate, float(low), float(high)


def recovery_line(label: str, transfer: Row, base: Row, direct: Row, skill: str) -> str:
    """One verdict line: how much of the direct fine-tune's gain on ``skill`` the transfer recovers (report split)."""
    share, low, high = recovered(
        transfer.held_out_samples[skill], base.held_out_samples[skill], direct.held_out_samples[skill]
    )
    verdict = "at least half" if low >= HALF else "less than half" if high < HALF else "about half (undecided)"
    return (
        f"- {label}: {skill} {base.held_out[skill]:.3f} → {transfer.held_out[skill]:.3f} on the report split, where"
        f" {direct.name} reaches {direct.held_out[skill]:.3f}: {share:.0%} of that gain (95 % interval"
        f" [{low:.0%}, {high:.0%}]), {verdict}."
    )


def results(experiment: Path, run: Path) -> str:
    """Score the versions, transfers and searched λ, compare them, count fine-tuning steps, write results.md; returns it."""
    pool_dir = load_experiment(experiment)[0].pool.parent
    scorer = SplitScorer(experiment, merge=MergeSpec(method="linear"), pool_file=pool_dir / POOL_FILE)
    ranked = ranked_trials(run)
    proposed = next(t for t in ranked if t.source.is_sampler)  # trial 0 is the diff as it is (λ = 1)
    lam = proposed.knobs["scale"]
    rows = {name: scorer.row(name, weights) for name, weights in ROWS.items()}
    # v2 + λ·diff as a linear merge of the pool's members: (1 − λ)·v2 + λ·(v2 + diff)
    name = f"v2 + {lam:.2f} × v1's diff (searched, trial {proposed.number})"
    rows[SEARCHED] = scorer.row(name, {"v2": 1.0 - lam, "v2_plus_diff": lam})
    curves = score_curves(experiment, pool_dir / STEPS_POOL)
    text = "\n".join(_markdown(rows, curves, scorer.objectives[0], pool_dir, run, ranked))
    write_results(run, text, rows_figure(list(rows.values()), "transfer: macro-average accuracy"))
    return text


def _search_line(ranked: Sequence[Trial]) -> str:
    """Which trial has the best macro-average, and its λ."""
    best = ranked[0]
    what = "the diff as it is, the search's first trial" if not best.source.is_sampler else "a proposed trial"
    return f"- The search's best trial by macro-average (search split): trial {best.number}, λ = {best.knobs['scale']:.2f} ({what})."


def _markdown(
    rows: dict[str, Row], curves: Sequence[Curve], skill: str, pool_dir: Path, run: Path, ranked: Sequence[Trial]
) -> list[str]:
    pairs = [(rows[a], rows[b]) for a, b in PAIRS]
    return [
        "# Fine-tuning transfer across base versions (toy scale)",
        "",
        f"Rows are linear merges of the transfer pool's members (see the weights). {SPLITS_NOTE}",
        "",
        scores_table(list(rows.values())),
        "",
        "## Comparisons (held-out report split)",
        "",
        COMPARISONS_NOTE,
        "",
        comparisons_table(pairs),
        "",
        f"The same on the fine-tuned skill, {skill}, alone:",
        "",
        comparisons_table(pairs, skill),
        "",
        "## Connectivity (`mergefront pool check`)",
        "",
        *connectivity(pool_dir / POOL_FILE),
        "",
        f"## Fine-tuning from v2 + v1's diff against fine-tuning v2 ({skill}, v1's fine-tuning recipe)",
        "",
        *steps_lines(curves, skill),
        "",
        "## Verdict",
        "",
        recovery_line("v2 + v1's diff", rows[V2_DIFF], rows[V2], rows[V2_FT], skill),
        recovery_line("distant + v1's diff", rows[DISTANT_DIFF], rows[DISTANT], rows[V2_FT], skill),
        steps_verdict(curves),
        _search_line(ranked),
        (
            f"- The best λ the search proposed: macro {rows[SEARCHED].search_macro:.3f}"
            f" (report {rows[SEARCHED].held_out_macro:.3f}), against v2's {rows[V2].search_macro:.3f}"
            f" ({rows[V2].held_out_macro:.3f}) and v2 + v1's diff's {rows[V2_DIFF].search_macro:.3f}"
            f" ({rows[V2_DIFF].held_out_macro:.3f})."
        ),
        "",
        "## The searched front over λ (v2 + λ × v1's diff, search split)",
        "",
        *lambda_front(run),
        "",
        "## Weights",
        "",
        weights_table(list(rows.values())),
    ]


main = main_of(
    "experiments.replications.transfer", __doc__, "experiments/transfer.yaml", {"run": "runs/transfer"}, results
)


if __name__ == "__main__":
    sys.exit(main())
