"""The terminal views of a run (`front`, `front --all`, `--json`, `--sort`) and the verdict a search ends with:
100 columns, one number format, front trials marked, every field in the JSON, any key to sort by."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import numpy as np
import pytest

from evaluators.core.errors import ConfigError
from optimizer.front.table import WIDTH, format_table, front_json, merge_verdict
from optimizer.store.columns import Columns
from optimizer.store.pareto import pareto_mask
from optimizer.store.rows import TrialRecord, TrialSource, TrialState
from optimizer.store.trials import TrialTable

OBJECTIVES = ("toy_add/acc", "toy_reverse/acc", "toy_sort/acc", "toy_shift/perplexity")
HELD_OUT = ("toy_add_report/acc", "toy_reverse_report/acc", "toy_sort_report/acc", "toy_shift_report/acc")
MEMBERS = ("add", "reverse", "sort", "shift", "extra")
COLUMNS = Columns(
    weights=MEMBERS,
    objectives=OBJECTIVES,
    directions=("maximize", "maximize", "maximize", "minimize"),
    held_out=HELD_OUT,
    held_out_directions=("maximize",) * 4,
)
NUMBER = re.compile(r"^-?\d+\.\d{3}(±\d+\.\d{3})?$")


def _table(n: int = 24, seed: int = 0) -> TrialTable:
    """``n`` trials: one single checkpoint per member, then sampled merges; random scores, held-out scores for all."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    records = []
    for t in range(n):
        single = t < len(MEMBERS)
        weights = np.eye(len(MEMBERS))[t] if single else rng.dirichlet(np.ones(len(MEMBERS)))
        records.append(
            TrialRecord(
                trial=t,
                state=TrialState.COMPLETE,
                source=TrialSource.single(MEMBERS[t]) if single else TrialSource.sampler(),
                weights=dict(zip(MEMBERS, map(float, weights), strict=True)),
                scores=dict(zip(OBJECTIVES, map(float, rng.random(4) * [1, 1, 1, 20]), strict=True)),
                stderr=dict(zip(OBJECTIVES, map(float, rng.random(4) / 20), strict=True)),
                merge_seconds=0.1,
                eval_seconds=1.0,
                worker="worker-0",
                device="cpu",
                started_at=now,
                finished_at=now,
                held_out=dict(zip(HELD_OUT, map(float, rng.random(4)), strict=True)),
                held_out_stderr=dict(zip(HELD_OUT, map(float, rng.random(4) / 20), strict=True)),
            )
        )
    return TrialTable.of(COLUMNS, records)


def _front(table: TrialTable) -> set[int]:
    scores = table.scores().to_numpy()
    return {n for n, keep in zip(table.numbers, pareto_mask(scores, [True, True, True, False]), strict=True) if keep}


def test_the_table_fits_100_columns_with_one_number_format() -> None:
    table = _table()
    text = format_table(table)
    assert max(map(len, text.splitlines())) <= WIDTH
    assert "held-out tasks:" in text and "weights:" in text  # too wide for one table: a block each
    cells = [c for line in text.splitlines() for c in line.split() if re.match(r"^-?\d+\.\d", c)]
    assert cells and all(NUMBER.match(c) for c in cells), [c for c in cells if not NUMBER.match(c)]
    assert len(cells) == len(table) * (len(OBJECTIVES) + len(HELD_OUT) + len(MEMBERS))
    for block in text.split("\n\n"):  # each block says which trial each row is
        assert re.search(r"(^|\n)trial ", block.removeprefix("held-out tasks:\n").removeprefix("weights:\n"))
    wide = format_table(table, wide=True)
    assert "weights:" not in wide and max(map(len, wide.splitlines())) > WIDTH
    assert len(wide.splitlines()) == len(table) + 1  # one header, one line per trial


def test_all_marks_the_front_and_json_carries_every_field() -> None:
    table = _table()
    front = _front(table)
    marked = {int(m) for m in re.findall(r"^\s*(\d+)\*", format_table(table, front), re.MULTILINE)}
    assert marked == front and 0 < len(front) < len(table)
    rows = json.loads(front_json(table, front))
    assert [r["trial"] for r in rows] == table.numbers
    for row, record in zip(rows, table.records(), strict=True):
        assert row["on_front"] == (record.trial in front) and (row["state"], row["error"]) == ("COMPLETE", None)
        assert row["source"] == str(record.source) and row["imported_from"] is None
        assert row["stderr"] == record.stderr and row["held_out"] == record.held_out
        assert row["held_out_stderr"] == record.held_out_stderr and row["weights"] == record.weights


def test_sort_by_any_objective_held_out_task_or_trial() -> None:
    table = _table()
    by_ppl = table.sorted_by("toy_shift/perplexity").scores()["toy_shift/perplexity"].tolist()
    assert by_ppl == sorted(by_ppl)  # minimised: lowest first
    held = table.sorted_by("toy_sort_report/acc").held_out()["toy_sort_report/acc"].tolist()
    assert held == sorted(held, reverse=True)
    assert table.sorted_by("toy_add/acc").sorted_by("trial").numbers == sorted(table.numbers)
    with pytest.raises(ConfigError, match=r"did you mean 'toy_sort_report/acc'\?.*'trial'"):
        table.sorted_by("toy_sort_reprt/acc")


def test_the_verdict_compares_the_best_single_with_the_best_merge() -> None:
    table = _table()
    front = table.where([n in _front(table) for n in table.numbers])
    lines = merge_verdict(table, front).splitlines()
    singles = sum(r.source.is_single for r in front.records())
    assert (
        lines[0]
        == f"verdict: {len(front) - singles} of {len(front)} front points are merges, {singles} single checkpoints"
    )
    scores = table.scores()
    is_single = np.array([r.source.is_single for r in table.records()])
    for line, label, best in zip(lines[1:5], OBJECTIVES, (max, max, max, min), strict=True):
        single = best(scores[label][is_single])
        merge = best(scores[label][~is_single])
        assert (
            line.startswith(f"  {label} ") and f"best single {single:.3f}" in line and f"best merge {merge:.3f}" in line
        )
    signs = np.array([1, 1, 1, -1])
    merges = scores[~is_single].to_numpy() * signs
    dominated = [
        f"{r.source.short} (trial {r.trial})"
        for r, row in zip(table.records(), scores.to_numpy() * signs, strict=True)
        if r.source.is_single and any((m >= row).all() and (m > row).any() for m in merges)
    ]
    assert lines[5] == f"  single checkpoints a merge dominates: {', '.join(dominated) or 'none'}"
