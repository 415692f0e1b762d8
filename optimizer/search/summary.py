"""What one call of a search reports (``SearchSummary``: counts, stop reason, timing, idle and worker
lines; ``SearchInterrupted`` carries it out of a search that Ctrl-C stopped) and where its time budgets read time
(``Clock``; a test sets its own)."""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from optimizer.store.rows import TrialRecord


class Clock(Protocol):
    """Where the time budgets read time (``Search.clock``). A test sets its own, so that a budget stops
    a search at a trial it can name, however fast or loaded the machine."""

    def now(self) -> float:
        """Seconds on a clock that never goes back (the wall-time budget and the run's wall time)."""
        ...

    def worker_seconds(self, record: TrialRecord) -> float:
        """Worker time a stored trial used (the worker-hours budget)."""
        ...


class RealClock:
    """The driver's monotonic clock, and the merge, swap and evaluation time each worker measured."""

    def now(self) -> float:
        """``time.perf_counter``: monotonic, in seconds."""
        return time.perf_counter()

    def worker_seconds(self, record: TrialRecord) -> float:
        """The trial's merge, swap and evaluation seconds (a missing value counts 0)."""
        return record.worker_seconds()


@dataclass
class SearchSummary:
    """The counts, stop reason, worker events and trial records of one search or resume call, for its closing log
    lines; ``front`` is the run's front after the call. ``interrupted`` counts the trials cut short by a stop (Ctrl-C,
    too many failures): re-queued, not failed, since nothing was wrong with their weights. ``finished_before``: the
    run had nothing left to do, so the call started no worker."""

    run_dir: Path
    complete: int = 0
    failed: int = 0
    interrupted: int = 0
    screened: int = 0
    wall_seconds: float = 0.0
    stop_reason: str = ""
    restarts: int = 0
    retired: list[str] = field(default_factory=list)
    records: list[TrialRecord] = field(default_factory=list)
    front: pa.Table | None = None
    finished_before: bool = False

    def closing_lines(self, worker_hours: float) -> list[str]:
        """What the CLI prints after the front: why the search stopped, what this call did and cost (``worker_hours``:
        the run's so far); for a run finished before the call, only that."""
        if self.finished_before:
            return [f"finished already: {self.stop_reason}; no worker started (resume --trials N searches further)"]
        interrupted = f", {self.interrupted} interrupted and re-queued" if self.interrupted else ""
        counts = f"{self.complete} trials complete ({self.screened} screened only), {self.failed} failed{interrupted}"
        return [
            f"stopped: {self.stop_reason}; this call: {counts}",
            f"wall time {self.wall_seconds:.1f} s; {self.timing_line()}; worker-hours so far {worker_hours:.3f}",
            self.idle_line(),
            self.workers_line(),
        ]

    def timing_line(self) -> str:
        """Median merge, swap and evaluation seconds over this call's complete trials."""
        done = [r for r in self.records if r.complete]
        if not done:
            return "no trial completed"
        merge = statistics.median(r.merge_seconds or 0.0 for r in done)
        swap = statistics.median(r.swap_seconds or 0.0 for r in done)
        evaluation = statistics.median(r.eval_seconds or 0.0 for r in done)
        return f"median trial: merge {merge:.3f} s, swap {swap:.3f} s, eval {evaluation:.2f} s"

    def workers_line(self) -> str:
        """How many workers were replaced after dying, and which slots were retired."""
        retired = ", ".join(self.retired) or "none"
        return f"workers: {self.restarts} replaced after dying, retired: {retired}"

    def idle_line(self) -> str:
        """Worker idle time between consecutive trials of this call, from the trials' timestamps."""
        by_worker: dict[str, list[TrialRecord]] = {}
        for r in self.records:
            if r.worker:
                by_worker.setdefault(r.worker, []).append(r)
        idle = busy = 0.0
        for runs in by_worker.values():
            runs.sort(key=lambda r: r.started_at)
            busy += sum((r.finished_at - r.started_at).total_seconds() for r in runs)
            idle += sum(max(0.0, (b.started_at - a.finished_at).total_seconds()) for a, b in itertools.pairwise(runs))
        share = idle / (idle + busy) if idle + busy else 0.0
        return f"worker idle between trials: {idle:.1f} s in total, {share:.1%} of worker time"


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a search cleanly: the trials in flight were stored as interrupted and queued again, and the
    workers stopped. Still a KeyboardInterrupt, so a caller that does not look for it stops as before; the CLI
    prints ``summary`` and how to go on."""

    def __init__(self, summary: SearchSummary) -> None:
        super().__init__()
        self.summary = summary
