"""End-to-end searches on the tiny pool with real Ray, real lm-eval and a real Optuna journal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from optimizer.cli import main
from optimizer.store.journal import journal_storage
from tests.helpers import TINY_RUN_PRINTED, TINY_RUN_TRIALS

pytestmark = pytest.mark.e2e
OBJECTIVES = ["toy_add/perplexity", "toy_reverse/acc"]
SIGNS = np.array([-1.0, 1.0])  # perplexity is minimised, accuracy maximised


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """a dominates b, written out independently of optimizer.store.pareto (both in maximise form)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def test_search_writes_trials_front_and_journal(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The session's shared search (conftest's tiny_run: two Ray actors, HF, lm-eval, the Optuna journal)."""
    run = tiny_run
    printed = (run.parent / TINY_RUN_PRINTED).read_text()
    trials = pd.read_parquet(run / "trials.parquet").sort_values("trial")
    front = pd.read_parquet(run / "front.parquet")

    assert trials["trial"].tolist() == list(range(TINY_RUN_TRIALS))
    assert (trials["state"] == "COMPLETE").all()
    assert trials["source"].tolist()[:5] == ["single:add", "single:reverse", "single:sort", "single:shift", "uniform"]
    weights = trials[["weight__add", "weight__reverse", "weight__sort", "weight__shift"]].to_numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(weights[0], [1, 0, 0, 0])
    np.testing.assert_allclose(weights[4], [0.25, 0.25, 0.25, 0.25])
    assert (trials["merge_seconds"] > 0).all() and (trials["eval_seconds"] > 0).all()
    assert set(trials["worker"]) == {"worker-0", "worker-1"}, "both workers must get trials"
    assert trials["stderr__toy_reverse_acc"].notna().all()

    scores = trials[[f"score__{o.replace('/', '_')}" for o in OBJECTIVES]].to_numpy() * SIGNS
    on_front = trials["trial"].isin(front["trial"]).to_numpy()
    assert on_front.any()
    for i, row in enumerate(scores):
        beaten = any(dominates(other, row) for j, other in enumerate(scores) if j != i)
        assert beaten != on_front[i], f"trial {i}: on front={on_front[i]} but dominated={beaten}"

    storage = journal_storage(run / "study.journal")
    study = optuna.load_study(study_name="tiny", storage=storage)
    done = sorted(study.get_trials(states=[optuna.trial.TrialState.COMPLETE]), key=lambda t: t.number)
    assert [t.number for t in done] == trials["trial"].tolist()
    np.testing.assert_allclose(
        [t.values for t in done], trials[[f"score__{o.replace('/', '_')}" for o in OBJECTIVES]].to_numpy()
    )
    assert study.metric_names == OBJECTIVES
    assert f"({len(front)} of {TINY_RUN_TRIALS} complete trials, 0 failed)" in printed
    assert "front points are merges" in printed and "single checkpoints a merge dominates: " in printed
    assert f"stopped: {TINY_RUN_TRIALS} trials evaluated" in printed and "worker idle between trials: " in printed

    assert main(["front", str(run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["trial"] for r in rows) == sorted(front["trial"].tolist())
    for r in rows:
        assert set(r) == {
            *("trial", "state", "error", "source", "imported_from", "on_front", "weights", "knobs"),
            *("scores", "stderr", "held_out", "held_out_stderr"),
        }
        assert r["on_front"] is True and r["imported_from"] is None
        assert set(r["weights"]) == {"add", "reverse", "sort", "shift"} and set(r["scores"]) == set(OBJECTIVES)
        assert isinstance(r["trial"], int) and abs(sum(r["weights"].values()) - 1) < 1e-9
