"""Warm start: a 4-member run imported into a 5-member pool, never re-evaluated, part of the new front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from optimizer.cli import main
from optimizer.journal import journal_storage
from tests.conftest import write_experiment

pytestmark = pytest.mark.e2e
MEMBERS = ["add", "reverse", "sort", "shift"]
SIGNS = np.array([-1.0, 1.0])  # add perplexity minimised, reverse accuracy maximised


def five_member_pool(tiny_pool: Path, directory: Path) -> Path:
    pool = tiny_pool / "pool"
    lines = ["name: toy5", "bases:", f"  toy-base: {{path: {pool / 'base'}}}", "members:"]
    lines += [f"  - {{name: {m}, path: {pool / m}}}" for m in MEMBERS]
    lines.append("  - {name: base, kind: base, base: toy-base}")
    path = directory / "pool5.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_warm_start_reuses_old_trials_without_re_evaluating(
    tiny_pool: Path, tmp_path: Path, ray_session: object
) -> None:
    runs = tmp_path / "runs"
    old_exp = write_experiment(
        tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=6, extra="sampler: {name: tpe}\n"
    )
    assert main(["search", str(old_exp), "--runs-dir", str(runs), "--no-progress"]) == 0
    old = pd.read_parquet(runs / "tiny" / "trials.parquet")

    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new_exp = write_experiment(
        new_dir, five_member_pool(tiny_pool, new_dir), tiny_pool / "tasks", trials=3, extra="sampler: {name: tpe}\n"
    )
    assert (
        main(
            [
                "search",
                str(new_exp),
                "--runs-dir",
                str(runs),
                "--name",
                "tiny5",
                "--warm-start",
                str(runs / "tiny"),
                "--no-progress",
            ]
        )
        == 0
    )
    new = pd.read_parquet(runs / "tiny5" / "trials.parquet")

    warm = new[new["source"].str.startswith("warm:tiny#")]
    fresh = new[~new["source"].str.startswith("warm:")]
    assert len(warm) == (old["state"] == "COMPLETE").sum() == 6
    assert (fresh["state"] == "COMPLETE").sum() == 3  # the budget counts new evaluations only
    # no old trial was evaluated again: no old single is re-run and imported rows keep their old timings
    assert set(fresh["source"]) <= {"single:base", "uniform", "sampler"}
    matched = old.set_index("trial").loc[[int(s.split("#")[1]) for s in warm["source"]]]
    for col in [
        "score.toy_add/perplexity",
        "score.toy_reverse/acc",
        "merge_seconds",
        "eval_seconds",
        *[f"weight.{m}" for m in MEMBERS],
    ]:
        np.testing.assert_array_equal(warm[col].to_numpy(), matched[col].to_numpy())
    assert (warm["weight.base"] == 0).all()
    assert warm["finished_at"].max() < fresh["started_at"].min()

    # the new front is computed over old and new trials together
    front = pd.read_parquet(runs / "tiny5" / "front.parquet")
    scores = new[["score.toy_add/perplexity", "score.toy_reverse/acc"]].to_numpy() * SIGNS
    expected = {
        int(t)
        for t, row in zip(new["trial"], scores, strict=True)
        if not any((o >= row).all() and (o > row).any() for o in scores)
    }
    assert set(front["trial"]) == expected
    assert front["source"].str.startswith("warm:").any()

    study = optuna.load_study(study_name="tiny5", storage=journal_storage(runs / "tiny5" / "study.journal"))
    done = {t.number: t.values for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])}
    assert set(done) == set(new["trial"])
    assert all(
        t.params["x.base"] == 0.0 for t in study.get_trials() if str(t.user_attrs.get("source")).startswith("warm:")
    )


def test_warm_start_refuses_changed_evaluation_settings(
    tiny_pool: Path, tmp_path: Path, ray_session: object, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    old_exp = write_experiment(
        tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", trials=2, extra="sampler: {name: tpe}\n"
    )
    assert main(["search", str(old_exp), "--runs-dir", str(runs), "--no-progress"]) == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(old_exp.read_text().replace("metric: acc,", "metric: acc, limit: 5,"))
    assert (
        main(["search", str(changed), "--runs-dir", str(runs), "--name", "again", "--warm-start", str(runs / "tiny")])
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot warm-start from" in err and "objective 'toy_reverse/acc' changed" in err
    assert not (runs / "again").exists()
