"""Park a search driver at a known point, however fast or loaded the machine: all trials of its budget
but one complete, and the last one in flight on a worker process that the test has stopped (SIGSTOP).
The driver can then only wait for that trial, until the test kills the worker or the driver.

The driver is a subprocess on the test session's Ray (``--ray-address``), with 2 workers. Each step
waits for a state the driver cannot leave by itself, so nothing races the search; the timeouts only
bound a hang:

1. a placement group holds every CPU of the session's Ray, so the driver's workers cannot start;
2. once the driver has opened its trial store, the test takes the store's lock (no trial can be stored
   while it holds it) and frees the CPUs;
3. the workers start and each is given one trial, which the study shows as running;
4. the test stops one worker and frees the lock: the other worker runs the rest of the budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import psutil
import ray
from optuna.trial import TrialState
from ray._private.state import actors, jobs
from ray.util.placement_group import placement_group, remove_placement_group

from optimizer.store.journal import journal_storage
from optimizer.store.trials import LOCK, TRIALS

TIMEOUT = 600.0  # seconds; bounds a hang only


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll ``condition`` while the driver runs; fail if the driver ends first, or after TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert proc.poll() is None, (
            f"the driver ended (exit code {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"not within {TIMEOUT} s: {what}"
        time.sleep(0.1)


def states(run: Path, study: str = "tiny") -> Counter[TrialState]:
    """How many of the study's trials are in each state, read from its journal."""
    loaded = optuna.load_study(study_name=study, storage=journal_storage(run / "study.journal"))
    return Counter(t.state for t in loaded.get_trials(deepcopy=False))


def driver_worker(proc: subprocess.Popen[bytes]) -> psutil.Process:
    """A live worker actor process of the driver ``proc``'s Ray job (never another test's)."""
    [job] = [j["JobID"] for j in jobs() if j["DriverPid"] == proc.pid and not j["IsDead"]]
    workers = [a for a in actors().values() if a["JobID"] == job and a["ActorClassName"].endswith("Worker")]
    pids = [a["Pid"] for a in workers if a["State"] == "ALIVE"]
    return psutil.Process(pids[0])


@contextlib.contextmanager
def _sigint_default() -> Iterator[None]:
    """SIGINT at its default while the driver starts: it inherits that, and so turns Ctrl-C into
    KeyboardInterrupt even when the tests run with SIGINT ignored (as a shell's background job does)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_locked(command: list[str], run: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the driver while the test holds every CPU of its Ray (so the workers cannot start), and
    take the trial store's lock once the driver has opened its store; the CPUs are freed then.
    Returns the driver and the descriptor holding the lock."""
    cpus = placement_group([{"CPU": ray.cluster_resources()["CPU"]}])
    try:
        ray.get(cpus.ready(), timeout=TIMEOUT)
        with log.open("wb") as out, _sigint_default():  # a file, not a pipe: the driver never blocks printing
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: (run / TRIALS).is_file(), proc, log, "the driver opened its trial store")
            lock = os.open(run / LOCK, os.O_RDWR)
            fcntl.flock(lock, fcntl.LOCK_EX)
        except BaseException:
            proc.kill()
            raise
        return proc, lock
    finally:
        remove_placement_group(cpus)


def search_command(experiment: Path, runs_dir: Path, ray_address: str) -> list[str]:
    """``mergefront search`` of ``experiment`` into ``runs_dir`` on the test's Ray, as a parked driver runs it."""
    mergefront = str(Path(sys.executable).with_name("mergefront"))
    return [
        mergefront,
        "search",
        str(experiment),
        "--runs-dir",
        str(runs_dir),
        "--no-progress",
        "--ray-address",
        ray_address,
    ]


def start_parked(
    command: list[str], run: Path, budget: int, log: Path
) -> tuple[subprocess.Popen[bytes], psutil.Process]:
    """Start the driver ``command`` (which writes the run ``run``, and its output to ``log``) and park it,
    as the module docstring says; returns the driver and its stopped worker. On failure both are killed."""
    proc, lock = _start_locked(command, run, log)
    stopped: list[psutil.Process] = []
    try:
        try:
            wait_for(lambda: states(run)[TrialState.RUNNING] == 2, proc, log, "each worker was given a trial")
            stopped.append(driver_worker(proc))
            stopped[0].suspend()
        finally:
            os.close(lock)  # frees the lock: the other worker goes on
        wait_for(lambda: states(run)[TrialState.COMPLETE] == budget - 1, proc, log, f"{budget - 1} trials completed")
    except BaseException:
        proc.kill()
        for worker in stopped:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
        raise
    return proc, stopped[0]
