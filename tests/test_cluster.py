"""Cluster mode: a real two-node Ray cluster started with ``ray start`` on this machine, a search run
through it with ``--ray-address``, and the error a worker gives when its node cannot read the pool.

The cluster's processes are started in their own process groups and marked with an environment
variable, so the teardown kills exactly them (never ``ray stop``, which would end every Ray session
on the machine) and checks that none is left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from evaluators.core.errors import MergefrontError, PoolError
from evaluators.pool import load_pool
from evaluators.pool.readable import SHARED_STORAGE
from evaluators.scoring.tasks import TaskSpec
from evaluators.worker import Worker, WorkerSpec
from tests.helpers import free_port, write_experiment

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
MARKER = "MERGEFRONT_TEST_CLUSTER"  # set in the environment of every process the cluster test starts
HANG = 600.0  # seconds; every timeout here bounds a hang only (a loaded machine is slow, not stuck)

# Run in a subprocess after the search: the cluster's alive nodes and the Worker actors it placed
# (the GCS keeps dead actors, so the search's stopped workers are still listed).
PLACEMENT = """
import json, sys, ray
from ray._private.state import actors
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
workers = [a for a in actors().values() if a["ActorClassName"].rsplit(".", 1)[-1] == "Worker"]
print(json.dumps({"nodes": nodes, "workers": [[a["Address"]["NodeID"], a["State"]] for a in workers]}))
"""


def _marked_processes(marker: str) -> list[str]:
    """'pid state command' of every live (non-zombie) process whose environment carries ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"{MARKER}={marker}".encode() not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found.append(f"{proc.name} {state} {command}")
    return found


class LocalCluster:
    """A Ray head and one more node on 127.0.0.1, each a ``ray start --block`` in its own process group."""

    def __init__(self) -> None:
        # the session's unix sockets must stay under ~107 characters: a short directory under /tmp
        self.root = Path(tempfile.mkdtemp(prefix="mfc", dir="/tmp"))
        self.marker = self.root.name
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update({MARKER: self.marker, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self._node("head", ["--head", "--port", str(self.port), "--include-dashboard", "false"])
        self._node("node", ["--address", self.address])

    def _node(self, name: str, args: list[str]) -> None:
        """Start one node and wait until ``ray start`` says it is up (it has joined the cluster)."""
        ports = [  # every port a node opens, so that it never collides with other Ray sessions on the machine
            "--node-manager-port", "--object-manager-port", "--metrics-export-port",
            "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
        ]  # fmt: skip
        log = self.root / f"{name}.log"
        command = [
            str(BIN / "ray"), "start", *args, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
            "--object-store-memory", str(100 * 1024**2), "--temp-dir", str(self.root / name),
            "--disable-usage-stats", "--block",
            *[x for flag in ports for x in (flag, str(free_port()))],
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + HANG
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start ({name}) did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> list[str]:
        """Kill every process the cluster started; returns those still alive afterwards (should be none)."""
        for proc in self.procs:  # `ray start --block` takes SIGTERM slowly: kill its whole group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            proc.wait(timeout=30)
        # Ray's worker processes put themselves in process groups of their own: find them by the marker
        for line in _marked_processes(self.marker):
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + HANG
        while (left := _marked_processes(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)
        return left


@pytest.fixture
def ray_cluster():  # type: ignore[no-untyped-def]
    cluster = LocalCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        left = cluster.stop()
        assert not left, f"cluster processes left after teardown: {left}"


def _run(cluster: LocalCluster, command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as a process group of its own (killed whole on timeout), in the cluster's environment."""
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{command[:3]} did not finish in {timeout} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out)


def test_search_runs_through_a_two_node_cluster(ray_cluster: LocalCluster, tiny_pool: Path, tmp_path: Path) -> None:
    # placement across nodes is under test: the dummy backend scores (tests/test_e2e.py runs HF and lm-eval on Ray)
    exp = write_experiment(tmp_path, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", backend="dummy")
    search = [
        str(BIN / "mergefront"), "search", str(exp), "--ray-address", ray_cluster.address, "--workers", "2",
        "--threads", "1", "--trials", "6", "--runs-dir", str(tmp_path / "runs"), "--no-progress",
    ]  # fmt: skip
    done = _run(ray_cluster, search, timeout=HANG)
    assert done.returncode == 0, done.stdout[-3000:]

    trials = pd.read_parquet(tmp_path / "runs" / "tiny" / "trials.parquet")
    assert len(trials) == 6 and (trials["state"] == "COMPLETE").all()
    assert set(trials["worker"]) == {"worker-0", "worker-1"}

    placement = _run(ray_cluster, [sys.executable, "-c", PLACEMENT, ray_cluster.address], timeout=HANG)
    assert placement.returncode == 0, placement.stdout[-3000:]
    seen = json.loads(placement.stdout.strip().splitlines()[-1])
    assert len(seen["nodes"]) == 2, seen
    assert len(seen["workers"]) == 2, f"expected the search's 2 worker actors, none restarted: {seen}"
    assert sorted(node for node, _ in seen["workers"]) == seen["nodes"], f"the workers shared a node: {seen}"


def _spec(pool_dir: Path) -> WorkerSpec:
    return WorkerSpec(
        pool=load_pool(pool_dir / "pool" / "checkpoints.yaml"),
        objectives={"rev": TaskSpec(task="toy_reverse", metric="acc", limit=8)},
        tasks_dir=pool_dir / "tasks",
        bootstrap_iters=0,
    )


def test_a_checkpoint_missing_on_the_worker_node_is_named_with_the_node(pool_copy: Path) -> None:
    spec = _spec(pool_copy)  # validated while every member is there
    shutil.rmtree(pool_copy / "pool" / "sort")
    with pytest.raises(PoolError) as caught:
        Worker(spec, "worker-3")
    message = str(caught.value)
    assert f"{pool_copy / 'pool' / 'sort'} (member 'sort') does not exist" in message
    assert f"worker-3 cannot read the pool on node {socket.gethostname()}" in message
    assert message.endswith(SHARED_STORAGE) and "\n" not in message


def test_an_unreadable_file_in_a_member_directory_is_named(pool_copy: Path) -> None:
    spec = _spec(pool_copy)
    config = pool_copy / "pool" / "shift" / "config.json"
    config.unlink()
    config.mkdir()  # an OSError on the file itself (permissions cannot be tested as root)
    with pytest.raises(
        PoolError, match=re.escape(f"{config} (member 'shift') cannot be read (Is a directory) there; {SHARED_STORAGE}")
    ):
        Worker(spec)


def test_the_driver_reports_a_worker_start_failure_with_the_path_and_node(pool_copy: Path, ray_session) -> None:  # type: ignore[no-untyped-def]
    import ray

    from optimizer.search.workers import RayWorkers

    spec = _spec(pool_copy)
    shutil.rmtree(pool_copy / "pool" / "add")
    workers = RayWorkers(spec, 1)
    try:
        with pytest.raises(MergefrontError) as caught:
            workers.wait_ready()
    finally:
        workers.stop()
    expected = (
        f"a worker failed to start: evaluators.core.errors.PoolError: worker-0 cannot read the pool on node "
        f"{socket.gethostname()} ({ray.util.get_node_ip_address()}): {pool_copy / 'pool' / 'add'} (member 'add') "
        f"does not exist there; {SHARED_STORAGE}"
    )
    assert str(caught.value) == expected
