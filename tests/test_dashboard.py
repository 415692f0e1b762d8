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
