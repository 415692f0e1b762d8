"""The README.md of an exported merge: Hugging Face front matter, what went in with which weights, and how it scored.

The front matter is written by ``huggingface_hub.ModelCardData`` (the library the Hub's own cards come from), so
``huggingface_hub.ModelCard`` reads it back: ``base_model`` lists the merged members given as Hub repo ids (weight 0
left out; a local folder is not a model id the Hub knows),
``library_name`` is transformers, and ``license`` is set only when every merged member's own card names the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData

from evaluators.merge import MergeSpec, parameter_names
from evaluators.pool import Pool
from evaluators.pool.config import BaseMember, Member
from evaluators.pool.location import repo_id

VERSIONS = ("mergefront", "lm_eval", "transformers")


@dataclass(frozen=True)
class Provenance:
    """Where an exported merge came from: a search trial, or a one-off ``mergefront merge``."""

    origin: str
    scores: Mapping[str, tuple[float, float | None, str]] = field(
        default_factory=dict
    )  # objective: (value, stderr, direction)
    held_out: Mapping[str, float] = field(default_factory=dict)
    front: str = ""
    samples: Mapping[str, int] = field(default_factory=dict)  # examples each objective was scored on


def _merged(pool: Pool, weights: Mapping[str, float]) -> list[Member]:
    """The members with a nonzero weight (under any group: a weight label is ``member`` or ``group/member``)."""
    used = {label.rsplit("/", 1)[-1] for label, w in weights.items() if w != 0.0}
    return [m for m in pool.members if m.name in used]


def _card_dir(pool: Pool, member: Member) -> Path | None:
    """The directory whose README.md is the member's own card (its license), if it has one."""
    if isinstance(member, BaseMember):
        return pool.bases[member.base].path
    path = getattr(member, "path", None) or getattr(member, "source_finetune", None)
    return path if isinstance(path, Path) else None


def _license(pool: Pool, members: list[Member]) -> str | None:
    """The license every merged member's card names, or None when one names none or they differ."""
    found: set[str | None] = set()
    for member in members:
        directory = _card_dir(pool, member)
        card = directory / "README.md" if directory is not None else None
        try:
            found.add(ModelCard.load(card).data.license if card is not None and card.is_file() else None)
        except (ValueError, yaml.YAMLError):  # a member's own card that does not parse says no license we can trust
            found.add(None)
    return found.pop() if len(found) == 1 else None


def _front_matter(pool: Pool, members: list[Member]) -> str:
    """The card's YAML front matter, as huggingface_hub writes it."""
    ids = [i for m in members if (d := _card_dir(pool, m)) is not None and (i := repo_id(d)) is not None]
    data = ModelCardData(
        base_model=ids or None,  # the Hub takes model ids only: members given as local folders are not listed
        library_name="transformers",
        license=_license(pool, members),
        tags=["merge", "mergefront"],
    )
    return f"---\n{data.to_yaml()}\n---"


def model_card(
    pool: Pool,
    spec: MergeSpec,
    weights: Mapping[str, float],
    knobs: Mapping[str, float],
    provenance: Provenance,
    recipe_note: str,
) -> str:
    """The model card's markdown: front matter, the merged members with their weights (weight 0 left out), the method
    and knob values, the scores ``provenance`` carries, the versions that made it, and ``recipe_note``: the closing line
    on the mergekit recipe (written beside the merge, or why there is none)."""
    members = _merged(pool, weights)
    lines = [
        _front_matter(pool, members),
        f"# Merge of {len(members)} checkpoint{'s' * (len(members) != 1)} from pool '{pool.name}'",
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
    kinds = {m.name: m.kind for m in members}
    lines += [
        f"| {label} | {kinds[label.rsplit('/', 1)[-1]]} | {w:.4f} |"
        for label, w in weights.items()
        if label.rsplit("/", 1)[-1] in kinds and w != 0.0
    ]
    lines += _score_lines(provenance)
    lines += [
        "",
        f"mergekit: {recipe_note}.",
        "",
        f"Written {datetime.now(UTC).date().isoformat()} by " + ", ".join(f"{p} {version(p)}" for p in VERSIONS) + ".",
        "",
    ]
    return "\n".join(lines)


def _score_lines(provenance: Provenance) -> list[str]:
    """The searched scores (with the examples lm-eval scored each on), held-out scores and the place on the front."""
    lines: list[str] = []
    if provenance.scores:
        lines += ["", "| objective | score | stderr | examples | direction |", "|---|---|---|---|---|"]
        for name, (value, stderr, direction) in provenance.scores.items():
            error, examples = "" if stderr is None else f"{stderr:.4f}", provenance.samples.get(name, "")
            lines.append(f"| {name} | {value:.4f} | {error} | {examples} | {direction} |")
    if provenance.held_out:
        lines += ["", "Held-out report tasks (never seen by the search):", ""]
        lines += [f"- {name}: {value:.4f}" for name, value in provenance.held_out.items()]
    if provenance.front:
        lines += ["", provenance.front]
    return lines
