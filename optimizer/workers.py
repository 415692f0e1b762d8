"""The driver's workers: Ray actors that are replaced when one dies and retired when one keeps failing.

A worker whose process dies (killed, out of memory, node lost) is replaced by a fresh actor under
the same name; the replacement loads the pool and builds its model while the other workers go on,
so the search never waits for it. A worker slot whose trials fail ``retire_after`` times in a row
(deaths and evaluation errors alike) is retired: its actor is stopped and no trial goes to it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError

from evaluators.errors import MergefrontError
from evaluators.worker import WorkerSpec, start_worker

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    name: str
    actor: Any
    failures_in_a_row: int = 0
    restarts: int = 0


class WorkerSet:
    """Named worker slots: the idle actors, the replacements still starting, and the retired slots."""

    def __init__(self, spec: WorkerSpec, count: int, retire_after: int = 3) -> None:
        self._spec = spec
        self._retire_after = retire_after
        self._slots = [_Slot(f"worker-{i}", start_worker(spec, f"worker-{i}")) for i in range(count)]
        self.idle: list[Any] = []
        self.starting: dict[Any, _Slot] = {}
        self.retired: list[str] = []

    def wait_ready(self) -> None:
        """Block until every first actor is built; a worker that cannot start is a fatal error."""
        try:
            for line in ray.get([s.actor.ready.remote() for s in self._slots]):
                log.info("%s", line)
        except RayActorError as exc:
            raise MergefrontError(f"a worker failed to start: {cause(exc)}") from None
        self.idle = [s.actor for s in self._slots]

    @property
    def alive(self) -> int:
        return len(self._slots) - len(self.retired)

    @property
    def restarts(self) -> int:
        return sum(s.restarts for s in self._slots)

    def name(self, actor: Any) -> str:
        return self._slot(actor).name

    def succeeded(self, actor: Any) -> None:
        self._slot(actor).failures_in_a_row = 0
        self.idle.append(actor)

    def failed(self, actor: Any, error: str) -> None:
        """An evaluation raised: the actor is fine, but a slot that keeps failing is retired."""
        slot = self._slot(actor)
        if not self._count_failure(slot, error):
            self.idle.append(actor)

    def died(self, actor: Any, error: str) -> None:
        """The actor's process is gone: start a replacement unless the slot is to be retired."""
        slot = self._slot(actor)
        if not self._count_failure(slot, error):
            self._replace(slot)

    def started(self, ref: Any) -> None:
        """A replacement finished building (or died while building, and is replaced again)."""
        slot = self.starting.pop(ref)
        try:
            ray.get(ref)
        except RayActorError as exc:
            if not self._count_failure(slot, f"could not restart: {cause(exc)}"):
                self._replace(slot)
            return
        log.info("%s restarted (restart %d)", slot.name, slot.restarts)
        self.idle.append(slot.actor)

    def settle(self) -> list[Any]:
        """Wait for the replacements still starting; returns the actors that can take work."""
        while self.starting:
            [ref], _ = ray.wait(list(self.starting), num_returns=1)
            self.started(ref)
        return list(self.idle)

    def stop(self) -> None:
        for slot in self._slots:
            ray.kill(slot.actor)

    def _slot(self, actor: Any) -> _Slot:
        return next(s for s in self._slots if s.actor is actor)

    def _count_failure(self, slot: _Slot, error: str) -> bool:
        """Count one failure for ``slot``; returns whether the slot is now retired."""
        slot.failures_in_a_row += 1
        if slot.failures_in_a_row < self._retire_after:
            return False
        log.warning("%s retired after %d failures in a row; last: %s", slot.name, slot.failures_in_a_row, error)
        ray.kill(slot.actor)
        self.retired.append(slot.name)
        return True

    def _replace(self, slot: _Slot) -> None:
        ray.kill(slot.actor)
        slot.restarts += 1
        slot.actor = start_worker(self._spec, slot.name)
        log.warning("%s died; starting a replacement", slot.name)
        self.starting[slot.actor.ready.remote()] = slot


def cause(exc: Exception) -> str:
    """The last line of a remote traceback: the error type and message that matter."""
    text = str(getattr(exc, "cause", None) or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
