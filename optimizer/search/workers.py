"""The driver's workers, behind one interface (``WorkerPool``) with two implementations.

``RayWorkers`` (the default) runs each worker as a Ray actor. A worker whose process dies (killed,
out of memory, node lost) is replaced by a fresh actor under the same name; the replacement loads
the pool and builds its model while the other workers go on, so the search never waits for it.
``InProcessWorkers`` (``--in-process``) runs one worker inside the driver's process, without Ray:
for debugging, a quick look at a small pool, and tests of a model family, where an actor's start-up
(a new process importing torch, transformers and lm-eval: 8-9 s here) would cost more than the trials.

In both, a worker slot whose trials fail ``retire_after`` times in a row (deaths and evaluation
errors alike) is retired: no trial goes to it again.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

from evaluators.core.errors import ConfigError, MergefrontError
from evaluators.worker import Worker, WorkerSpec, start_worker

log = logging.getLogger(__name__)


class TrialFailed(Exception):
    """The worker's call raised; the worker itself is fine. The message is the error's last line."""


class WorkerLost(Exception):
    """The worker's process is gone (killed, out of memory, node lost)."""


class WorkerPool(Protocol):
    """What the search loop needs from its workers. A *call* returns a handle at once; ``wait`` blocks
    until one of the given handles (calls or replacements in ``starting``) is done."""

    idle: list[Any]
    starting: dict[Any, Any]
    retired: list[str]

    @property
    def alive(self) -> int:
        """Worker slots not retired."""

    @property
    def restarts(self) -> int:
        """Workers replaced after their process died, over all slots."""

    def wait_ready(self) -> None:
        """Start the workers and block until each is built; MergefrontError if one cannot start."""

    def name(self, worker: Any) -> str:
        """The slot name of ``worker`` (``worker-N``), for logs and trial records."""

    def call(self, worker: Any, method: str, *args: Any) -> Any:
        """Start ``worker.method(*args)``; returns a handle for ``wait`` and ``result`` at once."""

    def wait(self, handles: list[Any]) -> Any:
        """Block until one of ``handles`` is done and return it."""

    def result(self, handle: Any) -> Any:
        """A finished call's value; TrialFailed if the call raised, WorkerLost if the worker died."""

    def succeeded(self, worker: Any) -> None:
        """A call on ``worker`` succeeded: reset its failure count and make it idle."""

    def failed(self, worker: Any, error: str) -> None:
        """A call on ``worker`` raised (``error``): count it, and retire the slot when it keeps failing."""

    def died(self, worker: Any, error: str) -> None:
        """``worker``'s process is gone: count it, and replace the worker unless its slot is retired."""

    def started(self, handle: Any) -> None:
        """A replacement's handle in ``starting`` is done: the worker goes idle, or is replaced or retired."""

    def settle(self) -> list[Any]:
        """Wait for the replacements still starting; returns the workers that can take work."""

    def stop(self) -> None:
        """Release every worker; the pool takes no calls after."""


@dataclass
class _Slot:
    name: str
    worker: Any
    failures_in_a_row: int = 0
    restarts: int = 0


class _Slots:
    """Named worker slots, the idle workers, the replacements still starting, the retired slots."""

    def __init__(self, retire_after: int) -> None:
        self._retire_after = retire_after
        self._slots: list[_Slot] = []
        self.idle: list[Any] = []
        self.starting: dict[Any, _Slot] = {}
        self.retired: list[str] = []

    @property
    def alive(self) -> int:
        return len(self._slots) - len(self.retired)

    @property
    def restarts(self) -> int:
        return sum(s.restarts for s in self._slots)

    def name(self, worker: Any) -> str:
        return self._slot(worker).name

    def succeeded(self, worker: Any) -> None:
        self._slot(worker).failures_in_a_row = 0
        self.idle.append(worker)

    def failed(self, worker: Any, error: str) -> None:
        """A call raised: the worker is fine, but a slot that keeps failing is retired."""
        slot = self._slot(worker)
        if not self._count_failure(slot, error):
            self.idle.append(worker)

    def _slot(self, worker: Any) -> _Slot:
        return next(s for s in self._slots if s.worker is worker)

    def _count_failure(self, slot: _Slot, error: str) -> bool:
        """Count one failure for ``slot``; returns whether the slot is now retired."""
        slot.failures_in_a_row += 1
        if slot.failures_in_a_row < self._retire_after:
            return False
        log.warning("%s retired after %d failures in a row; last: %s", slot.name, slot.failures_in_a_row, error)
        self._discard(slot.worker)
        self.retired.append(slot.name)
        return True

    def _discard(self, worker: Any) -> None:
        """Release a retired worker's resources."""


class RayWorkers(_Slots):
    """``count`` Ray actors; a dead one is replaced while the others go on."""

    def __init__(self, spec: WorkerSpec, count: int, retire_after: int = 3) -> None:
        super().__init__(retire_after)
        self._spec = spec
        self._started = time.perf_counter()
        self._slots = [_Slot(f"worker-{i}", start_worker(spec, f"worker-{i}")) for i in range(count)]

    def wait_ready(self) -> None:
        """Block until every first actor is built, logging each one's ready line as it comes (a large model takes
        minutes); a worker that cannot start is a fatal error."""
        import ray
        from ray.exceptions import RayActorError

        pending = [s.worker.ready.remote() for s in self._slots]
        try:
            while pending:
                [done], pending = ray.wait(pending, num_returns=1)
                since = time.perf_counter() - self._started
                log.info(
                    "%s; up %.1f s after it was started (process start and imports included)", ray.get(done), since
                )
        except RayActorError as exc:
            raise MergefrontError(f"a worker failed to start: {cause(exc)}") from None
        self.idle = [s.worker for s in self._slots]

    def call(self, worker: Any, method: str, *args: Any) -> Any:
        """``actor.method.remote(*args)``: the handle is a Ray object ref."""
        return getattr(worker, method).remote(*args)

    def wait(self, handles: list[Any]) -> Any:
        """The first of ``handles`` to finish (``ray.wait``)."""
        import ray

        [done], _ = ray.wait(handles, num_returns=1)
        return done

    def result(self, handle: Any) -> Any:
        """``ray.get`` of ``handle``, with Ray's task and actor errors turned into TrialFailed and WorkerLost."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return ray.get(handle)
        except RayTaskError as exc:
            raise TrialFailed(cause(exc)) from None
        except RayActorError as exc:
            raise WorkerLost(cause(exc)) from None

    def died(self, worker: Any, error: str) -> None:
        """The actor's process is gone: start a replacement unless the slot is to be retired."""
        slot = self._slot(worker)
        if not self._count_failure(slot, error):
            self._replace(slot)

    def started(self, handle: Any) -> None:
        """A replacement finished building (or died while building, and is replaced again)."""
        slot = self.starting.pop(handle)
        try:
            self.result(handle)
        except (WorkerLost, TrialFailed) as exc:
            if not self._count_failure(slot, f"could not restart: {exc}"):
                self._replace(slot)
            return
        log.info("%s restarted (restart %d)", slot.name, slot.restarts)
        self.idle.append(slot.worker)

    def settle(self) -> list[Any]:
        """Wait for the replacements still starting; returns the actors that can take work."""
        while self.starting:
            self.started(self.wait(list(self.starting)))
        return list(self.idle)

    def stop(self) -> None:
        """Kill every actor."""
        import ray

        for slot in self._slots:
            ray.kill(slot.worker)

    def _discard(self, worker: Any) -> None:
        import ray

        ray.kill(worker)

    def _replace(self, slot: _Slot) -> None:
        import ray

        ray.kill(slot.worker)
        slot.restarts += 1
        slot.worker = start_worker(self._spec, slot.name)
        log.warning("%s died; starting a replacement", slot.name)
        self.starting[slot.worker.ready.remote()] = slot


@dataclass(frozen=True, eq=False)  # a handle is a dict key by identity, as a Ray ref is
class _Done:
    """An in-process call, finished when it was made: its value, or the error it raised."""

    value: Any = None
    error: str | None = None


class InProcessWorkers(_Slots):
    """One worker in the driver's process. Each call runs to completion when it is made, so ``wait``
    returns at once; a worker cannot die without the driver, so nothing is ever replaced."""

    def __init__(self, spec: WorkerSpec, retire_after: int = 3) -> None:
        super().__init__(retire_after)
        self._spec = spec

    def build_worker(self) -> Any:
        """The one worker, built here from the spec (logs its ready line); a subclass may hand in one built
        elsewhere (bench/search.py's memo over a worker shared by many runs)."""
        return Worker(self._spec, "worker-0")

    def wait_ready(self) -> None:
        """Build the worker here; one that cannot start is a fatal error (as with Ray)."""
        try:
            worker = self.build_worker()
        except Exception as exc:  # noqa: BLE001 - reported as Ray reports a failed actor
            raise MergefrontError(f"a worker failed to start: {_line(exc)}") from None
        self._slots = [_Slot("worker-0", worker)]
        self.idle = [worker]

    def call(self, worker: Any, method: str, *args: Any) -> _Done:
        """Run the call now. What it prints (lm-eval prints a line per bootstrapped metric) goes to
        the debug log, as a Ray actor's output goes to Ray's log files; with ``-v`` it stays on
        stdout, where a debugger's prompt needs it."""
        quiet = not log.isEnabledFor(logging.DEBUG)
        try:
            with contextlib.redirect_stdout(_DebugLines()) if quiet else contextlib.nullcontext():
                return _Done(value=getattr(worker, method)(*args))
        except Exception as exc:  # noqa: BLE001 - a trial's error is recorded, as a Ray task's is
            return _Done(error=_line(exc))

    def wait(self, handles: list[Any]) -> Any:
        """The first handle: every in-process call is finished when it is made."""
        return handles[0]

    def result(self, handle: _Done) -> Any:
        """The call's value, or TrialFailed with the error's last line."""
        if handle.error is not None:
            raise TrialFailed(handle.error)
        return handle.value

    def died(self, worker: Any, error: str) -> None:
        """Never called: an in-process worker dies only with its driver (AssertionError)."""
        raise AssertionError("an in-process worker cannot die without its driver")

    def started(self, handle: Any) -> None:
        """Never called: nothing is replaced in process (AssertionError)."""
        raise AssertionError("an in-process worker is never replaced")

    def settle(self) -> list[Any]:
        """The idle workers (nothing is ever starting)."""
        return list(self.idle)

    def stop(self) -> None:
        """Forget the worker (it lives and ends with the driver's process)."""
        self.idle = []


def start_workers(spec: WorkerSpec, count: int, in_process: bool) -> WorkerPool:
    """``count`` Ray actors, or one worker in this process; ``wait_ready`` builds them."""
    if in_process:
        log.info("starting 1 worker in this process (--in-process): loading the pool and building the model")
        return InProcessWorkers(spec)
    log.info("starting %d worker(s): loading the pool and building the model", count)
    return RayWorkers(spec, count)


class _DebugLines(io.TextIOBase):
    """A text stream whose lines go to the debug log."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("worker-0: %s", line)
        return len(text)


def _line(exc: BaseException) -> str:
    """``module.Type: message``, the form of the last line of a Ray traceback."""
    kind = type(exc)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"{module}{kind.__qualname__}: {exc}"


def cause(exc: Exception) -> str:
    """The last line of a remote traceback: the error type and message that matter."""
    text = str(getattr(exc, "cause", None) or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def check_ray_address(address: str | None) -> None:
    """Refuse a cluster address where nothing listens, before any run directory is written."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except ValueError:
        raise ConfigError(
            f"--ray-address '{address}' is not HOST:PORT (e.g. 10.0.0.5:6379, the head's GCS port)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the cluster with `ray start --head` or fix the address"
        ) from None


def start_ray(address: str | None, cpus_needed: int) -> bool:
    """Connect to ``address`` or start a local Ray; returns whether we started it (and must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, cpus_needed)
        log.info("starting a local Ray with %d CPUs", kwargs["num_cpus"])
    else:
        log.info("connecting to Ray at %s", address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot connect to Ray at '{address}' ({exc}); check --ray-address") from None
    return True
