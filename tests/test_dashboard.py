"""`mergefront dashboard` serves the run's journal in a real optuna-dashboard, objective names included,
on 127.0.0.1 only unless told otherwise."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from optimizer.experiment.config import load_experiment
from optimizer.search.driver import Search
from tests.helpers import free_port, write_experiment

STARTUP = 300.0  # seconds for the dashboard to answer; bounds a hang only (a loaded machine starts it slowly)


def outward_address() -> str:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        return str(s.getsockname()[0])


def test_dashboard_serves_the_run_with_objective_names(tiny_pool: Path, tmp_path: Path) -> None:
    experiment, pool = load_experiment(
        write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks")
    )
    run = tmp_path / "run"
    run.mkdir()
    Search.create(experiment, pool, run)
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mergefront")), "dashboard", str(run), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, study = time.monotonic() + STARTUP, None
        while study is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:  # a slow first answer is waited for, not retried
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies/0", timeout=max(1.0, deadline - time.monotonic())
                ) as response:
                    study = json.load(response)
            except OSError:
                time.sleep(0.3)
        assert study is not None, f"the dashboard did not answer within {STARTUP} s"
        assert study["name"] == "tiny"
        assert study["objective_names"] == experiment.labels
        assert study["directions"] == experiment.directions
        outward = outward_address()
        assert not outward.startswith("127.")
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect((outward, port))  # bound to loopback: unreachable from the network
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_finished_runs_trials_carry_their_real_weights_and_held_out_scores(tiny_pool: Path, tmp_path: Path) -> None:
    """The dashboard's parameters are the sampler's simplex coordinates; the weights users merge with, the knobs by
    name, the source, the held-out scores and front membership come from trials.parquet as user attributes."""
    import optuna

    from optimizer.front.dashboard import dashboard_view
    from optimizer.store.trials import FRONT, TRIALS, read_trials
    from tests.helpers import search, tiny_experiment

    extra = "held_out: [{task: toy_sort_report, name: sort_report}]\nmerge: {method: task_arithmetic}\nspace: {knobs: {scale: [0.5, 1.5]}}\n"
    search(tiny_experiment(tiny_pool, tmp_path, extra, trials=7), tmp_path / "runs", "--in-process")
    run = tmp_path / "runs" / "tiny"
    view = dashboard_view(run)
    assert not view.live and view.trials == 7
    study = optuna.load_study(study_name="tiny", storage=view.storage)
    assert study.metric_names == ["toy_add/perplexity", "toy_reverse/acc"]
    table, front = read_trials(run, TRIALS), set(read_trials(run, FRONT).numbers)
    assert front
    for trial in study.trials:
        record = table.find(trial.number)
        assert record is not None
        attrs = trial.user_attrs
        assert {m: attrs[f"weight {m}"] for m in record.weights} == record.weights
        assert attrs["lambda"] == record.knobs["scale"]
        assert attrs["source"] == str(record.source) and attrs["on front"] == (trial.number in front)
        assert ("held-out sort_report" in attrs) == (trial.number in front)
        if trial.number in front:
            assert attrs["held-out sort_report"] == record.held_out["sort_report"]
        assert trial.values == [record.scores[o] for o in table.columns.objectives]
    # the driver notes the merge on the study's own trials as it starts them: a live dashboard shows weights too
    from optimizer.store.study import JOURNAL, open_storage

    stored = optuna.load_study(study_name="tiny", storage=open_storage(run, JOURNAL))
    for trial in stored.trials:
        assert {m: trial.user_attrs[f"weight {m}"] for m in table.columns.weights} == table.find(trial.number).weights
    # a sampler trial's raw parameters are not its weights: the attributes are what tells them apart
    sampled = [t for t in study.trials if t.user_attrs["source"] == "sampler"]
    assert any(set(t.params.values()) != {t.user_attrs[f"weight {m}"] for m in table.columns.weights} for t in sampled)
