"""Warm start: a 4-member run imported into a 5-member pool, never re-evaluated, keeping each trial's source and
identity, part of the new front, with the new member scored alone first; a same-pool warm start evaluates no
baseline again; a run
from before ``report:`` was renamed ``held_out:`` still resumes and warm-starts. Real searches with the dummy
backend in this process."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from optimizer.cli import main
from optimizer.experiment.config import load_experiment
from optimizer.experiment.fingerprint import fingerprint
from optimizer.run.directory import RunMeta, read_meta, read_run, write_meta
from optimizer.search.warmstart import Imported
from optimizer.space.weights import SpaceSpec, WeightSpace
from optimizer.store.journal import journal_storage
from optimizer.store.rows import TrialSource
from tests.helpers import MEMBERS, five_member_pool, non_dominated, search, tiny_experiment, write_experiment


def test_warm_start_reuses_old_trials_without_re_evaluating(tiny_pool: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    old_exp = tiny_experiment(tiny_pool, tmp_path, "sampler: {name: tpe}\n", trials=6)
    assert main(["search", str(old_exp), "--runs-dir", str(runs), "--no-progress", "--in-process"]) == 0
    old = pd.read_parquet(runs / "tiny" / "trials.parquet")

    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new_exp = write_experiment(
        new_dir, five_member_pool(tiny_pool, new_dir), tiny_pool / "tasks", "sampler: {name: tpe}\n", 3, "dummy"
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
                "--in-process",
            ]
        )
        == 0
    )
    new = pd.read_parquet(runs / "tiny5" / "trials.parquet")

    warm = new[new["imported_from"].str.startswith("tiny#", na=False)]
    fresh = new[new["imported_from"].isna()].sort_values("trial")
    assert len(warm) == len(new) - len(fresh) == (old["state"] == "COMPLETE").sum() == 6
    # the budget counts new evaluations only: the new member alone, the new pool's uniform average, the sampler;
    # no old trial was evaluated again, and imported rows keep their old source, scores and timings
    assert fresh["source"].tolist() == ["single:base", "uniform", "sampler"] and (fresh["state"] == "COMPLETE").all()
    matched = old.set_index("trial").loc[[int(s.split("#")[1]) for s in warm["imported_from"]]]
    for col in [
        "source",
        "score__toy_add_perplexity",
        "score__toy_reverse_acc",
        "merge_seconds",
        "eval_seconds",
        *[f"weight__{m}" for m in MEMBERS],
    ]:
        np.testing.assert_array_equal(warm[col].to_numpy(), matched[col].to_numpy())
    assert (warm["weight__base"] == 0).all()
    assert warm["finished_at"].max() < fresh["started_at"].min()

    # the new front is computed over old and new trials together
    front = pd.read_parquet(runs / "tiny5" / "front.parquet")
    # one front over old and new trials (whether an imported one is on it depends on the tiny pool's training)
    assert set(front["trial"]) == non_dominated(new)

    study = optuna.load_study(study_name="tiny5", storage=journal_storage(runs / "tiny5" / "study.journal"))
    done = {t.number: t for t in study.get_trials(states=[optuna.trial.TrialState.COMPLETE])}
    assert set(done) == set(new["trial"])
    assert {n: t.user_attrs.get("imported_from") for n, t in done.items() if "imported_from" in t.user_attrs} == dict(
        zip(warm["trial"], warm["imported_from"], strict=True)
    )
    assert all(done[n].params["x.base"] == 0.0 for n in warm["trial"])

    # an import killed between its study write and its Parquet write is stored on resume as the import it was
    trials_file = runs / "tiny5" / "trials.parquet"
    new.drop(warm.index[0]).to_parquet(trials_file)  # without our schema metadata: read with the run's columns
    assert main(["resume", str(runs / "tiny5"), "--no-progress", "--in-process"]) == 0
    restored = pd.read_parquet(trials_file).set_index("trial").loc[warm["trial"].iloc[0]]
    assert (restored["source"], restored["imported_from"]) == (warm["source"].iloc[0], warm["imported_from"].iloc[0])

    # the same pool again: every baseline is imported (the simplex's uniform average too), none is evaluated again;
    # a trial imported twice still names the run that evaluated it
    again = ["--name", "again", "--warm-start", str(runs / "tiny5"), "--trials", "1", "--no-progress", "--in-process"]
    assert main(["search", str(new_exp), "--runs-dir", str(runs), *again]) == 0
    third = pd.read_parquet(runs / "again" / "trials.parquet")
    assert third.loc[third["imported_from"].isna(), "source"].tolist() == ["sampler"]
    origins = [f"tiny#{t}" for t in matched.index] + [f"tiny5#{t}" for t in fresh["trial"]]
    assert sorted(third["imported_from"].dropna()) == sorted(origins)


def test_new_members_are_scored_alone_before_the_baselines_an_old_run_never_reached_and_renamed_ones_keep_theirs(
    tiny_pool: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    old = search(tiny_experiment(tiny_pool, tmp_path, trials=2), runs, "--in-process")
    assert old["source"].tolist() == ["single:add", "single:reverse"]
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    pool = five_member_pool(tiny_pool, new_dir)
    pool.write_text(pool.read_text().replace("name: reverse,", "name: rev,"))  # the same files under a new name
    new_exp = write_experiment(new_dir, pool, tiny_pool / "tasks", trials=2)
    warm = ["--name", "tiny5", "--warm-start", str(runs / "tiny"), "--in-process", "--no-progress"]
    assert main(["search", str(new_exp), "--runs-dir", str(runs), *warm]) == 0
    new = pd.read_parquet(runs / "tiny5" / "trials.parquet")
    assert new["source"].tolist() == ["single:add", "single:rev", "single:base", "single:sort"]
    assert new["weight__rev"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert new["imported_from"].fillna("").tolist() == ["tiny#0", "tiny#1", "", ""]


def test_warm_start_refuses_changed_evaluation_settings(
    tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    old_exp = tiny_experiment(tiny_pool, tmp_path, "sampler: {name: tpe}\n", trials=2)
    assert main(["search", str(old_exp), "--runs-dir", str(runs), "--no-progress", "--in-process"]) == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(old_exp.read_text().replace("metric: acc,", "metric: acc, limit: 5,"))
    assert (
        main(
            ["search", str(changed), "--runs-dir", str(runs), "--name", "again", "--warm-start", str(runs / "tiny")]
            + ["--in-process"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot warm-start from" in err and "objective 'toy_reverse/acc' changed" in err
    assert not (runs / "again").exists()


HELD_OUT = "held_out: [{task: toy_sort_report, name: sort_report}]\n"
FORMER = "experiment: 'report' is now called 'held_out'; 'report' still works but will go"


def _deprecations(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "optimizer.experiment.config"]


def test_report_is_the_former_name_of_held_out(
    tiny_pool: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "new").mkdir(), (tmp_path / "old").mkdir()
    new_file = tiny_experiment(tiny_pool, tmp_path / "new", HELD_OUT)
    old_file = tiny_experiment(tiny_pool, tmp_path / "old", HELD_OUT.replace("held_out:", "report:"))
    with caplog.at_level(logging.WARNING):
        new, pool = load_experiment(new_file)
        assert _deprecations(caplog) == []
        old, _ = load_experiment(old_file)
    assert _deprecations(caplog) == [FORMER]  # one line for the person's file
    assert old == new and [o.label for o in old.held_out] == ["sort_report"]
    assert old.worker_spec(pool) == new.worker_spec(pool)
    assert fingerprint(old, pool) == fingerprint(new, pool)
    both = tmp_path / "both.yaml"
    both.write_text(new_file.read_text() + HELD_OUT.replace("held_out:", "report:"))
    assert main(["search", str(both), "--runs-dir", str(tmp_path / "runs"), "--in-process"]) == 2


def test_a_run_from_before_held_out_resumes_and_warm_starts_silently(
    tiny_pool: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = tmp_path / "runs"
    exp = tiny_experiment(tiny_pool, tmp_path, HELD_OUT, trials=4)
    assert main(["search", str(exp), "--runs-dir", str(runs), "--no-progress", "--in-process"]) == 0
    run = runs / "tiny"
    written = (run / "run.json").read_text()
    write_meta(run, read_meta(run))
    assert (run / "run.json").read_text() == written  # RunMeta reads and writes run.json's bytes alike
    meta = json.loads(written)
    assert RunMeta.from_json({k: v for k, v in meta.items() if k != "storage"}).storage == "study.journal"
    meta["experiment"]["report"] = meta["experiment"].pop("held_out")  # what run.json held before the rename
    (run / "run.json").write_text(json.dumps(meta, indent=2))
    with caplog.at_level(logging.WARNING):
        experiment, pool = read_run(run, "start a new run")
        assert experiment == load_experiment(exp)[0] and fingerprint(experiment, pool) == meta["fingerprint"]
        caplog.clear()
        assert main(["resume", str(run), "--trials", "5", "--no-progress", "--in-process"]) == 0
        warm = ["--name", "again", "--warm-start", str(run), "--no-progress", "--in-process"]
        assert main(["search", str(exp), "--runs-dir", str(runs), *warm]) == 0
    assert _deprecations(caplog) == []  # a stored run is no person's input
    front = pd.read_parquet(run / "front.parquet")
    assert len(pd.read_parquet(run / "trials.parquet")) == 5 and front["held_out__sort_report"].notna().all()
    again = pd.read_parquet(runs / "again" / "trials.parquet")
    assert again["imported_from"].str.startswith("tiny#").sum() == 5
    # the same pool: the singles were imported, not evaluated again; the old run's 4-trial budget never reached the
    # uniform average, so it comes first
    assert again.loc[again["imported_from"].isna(), "source"].tolist() == ["uniform", "sampler", "sampler", "sampler"]


def test_an_imported_baseline_is_recognised_through_the_simplex_rounding() -> None:
    """With 7 members a recorded 1/7, normalised again, is not exactly 1/7: still the uniform average."""
    space = WeightSpace(SpaceSpec(), [f"m{i}" for i in range(7)])
    baselines = dict(space.baselines())
    recorded = space.weights(baselines[TrialSource.uniform()])  # what the old run stored
    reread = space.params_of(recorded, {})
    assert space.features(reread) != space.features(baselines[TrialSource.uniform()])
    todo = Imported([reread, baselines[TrialSource.single("m2")]], ("m5",)).baselines(space)
    assert [str(source) for source, _ in todo] == [
        "single:m5",
        "single:m0",
        "single:m1",
        "single:m3",
        "single:m4",
        "single:m6",
    ]
