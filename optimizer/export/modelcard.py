"""The README.md of an exported merge: what went in, with which weights, and how it scored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from evaluators.merge import MergeSpec, parameter_names
from evaluators.pool import Pool


@dataclass(frozen=True)
class Provenance:
    """Where an exported merge came from: a search trial, or a one-off ``mergefront merge``."""

    origin: str
    scores: Mapping[str, tuple[float, float | None, str]] = field(
        default_factory=dict
    )  # objective: (value, stderr, direction)
    held_out: Mapping[str, float] = field(default_factory=dict)
    front: str = ""


def model_card(
    pool: Pool,
    spec: MergeSpec,
    weights: Mapping[str, float],
    knobs: Mapping[str, float],
    provenance: Provenance,
    recipe_note: str,
) -> str:
    """The model card's markdown: the members with their weights, the method and knob values, the scores
    ``provenance`` carries, and ``recipe_note``: the closing line on the mergekit recipe (written beside the merge, or
    why there is none)."""
    lines = [
        "---",
        "tags: [merge, mergefront]",
        "---",
        f"# Merge of {len(pool.members)} checkpoints from pool '{pool.name}'",
        "",
        f"Made by mergefront from {provenance.origin}.",
        "",
        f"Method: `{spec.method}`"
        + "".join(f", {name} = {knobs[k]:g}" for k, name in parameter_names(knobs).items())
        + ".",
        "",
        "| member | kind | weight |",
        "|---|---|---|",
    ]
    kinds = {m.name: m.kind for m in pool.members}
    lines += [f"| {label} | {kinds.get(label.rsplit('/', 1)[-1], '')} | {w:.4f} |" for label, w in weights.items()]
    if provenance.scores:
        lines += ["", "| objective | score | stderr | direction |", "|---|---|---|---|"]
        for name, (value, stderr, direction) in provenance.scores.items():
            lines.append(f"| {name} | {value:.4f} | {'' if stderr is None else f'{stderr:.4f}'} | {direction} |")
    if provenance.held_out:
        lines += ["", "Held-out report tasks (never seen by the search):", ""]
        lines += [f"- {name}: {value:.4f}" for name, value in provenance.held_out.items()]
    if provenance.front:
        lines += ["", provenance.front]
    lines += ["", f"mergekit: {recipe_note}.", ""]
    return "\n".join(lines)
