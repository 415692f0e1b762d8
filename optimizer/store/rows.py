"""What one stored trial is: its state, fidelity and source as types, and the record itself.

This module and ``optimizer.store.columns`` (the column names) own the stored spelling of everything in a row: the
states (``COMPLETE``, ``FAIL``), the fidelities (``full``, ``screen:<n>``) and
the sources (``single:<checkpoint>``, ``uniform``, ``sampler``), and where an imported trial was evaluated
(``imported_from``: ``<run>#<trial>``). Code outside
``optimizer.store`` reads and writes ``TrialRecord`` objects (or ``TrialTable`` frames keyed by plain
labels) and never spells a column or compares these strings itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

import pandas as pd

from optimizer.store.columns import GROUPS, TIMINGS, Columns

# The errors of trials cut short by their driver's stop and queued again: failed in the study, but not for their
# weights (they run again), so counted apart from failures.
INTERRUPTED = "interrupted; re-queued"  # the driver stopped cleanly (Ctrl-C, or after too many failures)
ORPHANED = "the driver stopped before this trial finished; re-queued"  # found so by resume after a kill
INTERRUPTIONS = (INTERRUPTED, ORPHANED)


class TrialState(StrEnum):
    """A stored trial's state (the ``state`` column); a running trial is never stored."""

    COMPLETE = "COMPLETE"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Fidelity:
    """On how many examples a trial was scored (the ``fidelity`` column): ``full``, or ``screen:<n>``
    (a seeded subset of n examples per task). Not an enum: n is the run's screen size."""

    screen: int | None = None  # examples per task when the trial was only screened

    FULL: ClassVar[Fidelity]
    _SCREEN: ClassVar[str] = "screen:"

    @property
    def is_full(self) -> bool:
        """Scored on every example of every task."""
        return self.screen is None

    @classmethod
    def parse(cls, text: str) -> Fidelity:
        """The fidelity stored as ``text``; ValueError for anything but ``full`` or ``screen:<n>``."""
        if text == "full":
            return cls.FULL
        if text.startswith(cls._SCREEN) and text.removeprefix(cls._SCREEN).isdigit():
            return cls(int(text.removeprefix(cls._SCREEN)))
        raise ValueError(f"unknown fidelity '{text}': expected 'full' or 'screen:<n>'")

    def __str__(self) -> str:
        return "full" if self.screen is None else f"{self._SCREEN}{self.screen}"


Fidelity.FULL = Fidelity()


class SourceKind(StrEnum):
    """The kinds of trial source, as their stored prefix spells them."""

    SINGLE = "single"  # one checkpoint alone (a baseline)
    UNIFORM = "uniform"  # the uniform average (a baseline)
    SAMPLER = "sampler"  # proposed by the sampler
    WARM = "warm"  # only in runs from before ``imported_from``: an import, its own source not kept


@dataclass(frozen=True)
class TrialRef:
    """A trial of a named run (``<run>#<trial>``): where an imported trial was evaluated, so it keeps its
    identity in every later run that imports it (the ``imported_from`` column)."""

    run: str
    trial: int

    @classmethod
    def parse(cls, text: str) -> TrialRef:
        """The trial stored as ``text``; ValueError for anything but ``<run>#<number>``."""
        run, _, number = text.rpartition("#")
        if run and number.isdigit():
            return cls(run, int(number))
        raise ValueError(f"unknown trial reference '{text}': expected '<run>#<trial>'")

    def __str__(self) -> str:
        return f"{self.run}#{self.trial}"


@dataclass(frozen=True)
class TrialSource:
    """Where a trial's weights came from (the ``source`` column, and the study trial's ``source``
    attribute): ``str()`` gives the stored text, ``parse`` reads it back. A re-queued trial keeps the
    source of the trial it repeats, an imported one the source it had where it was evaluated."""

    kind: SourceKind
    name: str = ""  # the checkpoint of a single baseline, the run of an old-style import
    trial: int | None = None  # an old-style import's trial number in that run

    @classmethod
    def single(cls, checkpoint: str) -> TrialSource:
        """The baseline that is ``checkpoint`` alone."""
        return cls(SourceKind.SINGLE, checkpoint)

    @classmethod
    def uniform(cls) -> TrialSource:
        """The baseline that averages every member uniformly."""
        return cls(SourceKind.UNIFORM)

    @classmethod
    def sampler(cls) -> TrialSource:
        """A trial the sampler proposed."""
        return cls(SourceKind.SAMPLER)

    @classmethod
    def parse(cls, text: str) -> TrialSource:
        """The source stored as ``text``; ValueError for an unknown spelling."""
        kind, sep, rest = text.partition(":")
        if not sep and kind in (SourceKind.UNIFORM, SourceKind.SAMPLER):
            return cls(SourceKind(kind))
        if sep and kind == SourceKind.SINGLE and rest:
            return cls.single(rest)
        run, _, number = rest.rpartition("#")
        if sep and kind == SourceKind.WARM and run and number.isdigit():
            return cls(SourceKind.WARM, run, int(number))
        raise ValueError(f"unknown trial source '{text}'")

    def __str__(self) -> str:
        if self.kind is SourceKind.SINGLE:
            return f"single:{self.name}"
        if self.kind is SourceKind.WARM:
            return f"warm:{self.name}#{self.trial}"
        return self.kind.value

    @property
    def is_single(self) -> bool:
        """One checkpoint alone."""
        return self.kind is SourceKind.SINGLE

    @property
    def is_baseline(self) -> bool:
        """A single checkpoint or the uniform average."""
        return self.kind in (SourceKind.SINGLE, SourceKind.UNIFORM)

    @property
    def is_sampler(self) -> bool:
        """Proposed by the sampler in this run."""
        return self.kind is SourceKind.SAMPLER

    @property
    def imported_from(self) -> TrialRef | None:
        """The trial an old-style ``warm:<run>#<trial>`` source names (runs from before ``imported_from`` stored
        an import so, without its own source), else None."""
        return TrialRef(self.name, self.trial) if self.kind is SourceKind.WARM and self.trial is not None else None

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint of a single baseline, else None."""
        return self.name if self.is_single else None

    @property
    def short(self) -> str:
        """A label for plots and verdicts: the checkpoint of a single baseline, else the stored text."""
        return self.checkpoint or str(self)


def _present(x: Any) -> Any:
    """None for a missing value (None, NaN, NaT), else ``x``."""
    return None if x is None or (not isinstance(x, str) and pd.isna(x)) else x


def _datetime(x: Any) -> datetime:
    return x.to_pydatetime() if hasattr(x, "to_pydatetime") else x


@dataclass(frozen=True)
class TrialRecord:
    """One stored trial; scores are empty when the trial failed. Each dict is keyed by label (weight
    label, knob, objective, held-out task) and holds only the values that are present."""

    trial: int
    state: TrialState
    source: TrialSource
    weights: dict[str, float]
    scores: dict[str, float]
    stderr: dict[str, float | None]
    merge_seconds: float | None
    eval_seconds: float | None
    worker: str | None
    device: str | None
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    knobs: dict[str, float] = field(default_factory=dict)
    fidelity: Fidelity | None = Fidelity.FULL  # None for a failed trial
    predicted: dict[str, float] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)  # examples scored, per objective
    swap_seconds: float | None = None
    driver: str | None = None
    held_out: dict[str, float] = field(default_factory=dict)
    held_out_stderr: dict[str, float | None] = field(default_factory=dict)
    imported_from: TrialRef | None = None  # where a warm start's import was evaluated; None: evaluated in this run

    @classmethod
    def failure(cls, error: str, **fields: object) -> TrialRecord:
        """A failed trial: no scores, timings or worker."""
        empty: dict[str, object] = {
            "scores": {},
            "stderr": {},
            "merge_seconds": None,
            "eval_seconds": None,
            "worker": None,
            "device": None,
        }
        return cls(state=TrialState.FAIL, error=error, **empty, **fields)  # type: ignore[arg-type]

    @property
    def complete(self) -> bool:
        """The trial finished with scores."""
        return self.state is TrialState.COMPLETE

    @property
    def interrupted(self) -> bool:
        """Cut short by its driver's stop and queued again (``INTERRUPTIONS``): not a failure of its weights."""
        return self.error in INTERRUPTIONS

    @property
    def imported(self) -> bool:
        """Imported by a warm start from an earlier run (not evaluated in this one)."""
        return self.imported_from is not None

    @property
    def full(self) -> bool:
        """Complete and scored on the full task sets (what the front and a warm start take)."""
        return self.complete and (self.fidelity is None or self.fidelity.is_full)

    def worker_seconds(self) -> float:
        """Merge, swap and evaluation time the worker measured (0 for what it did not)."""
        return sum(getattr(self, name) or 0.0 for name in TIMINGS)

    def row(self, columns: Columns, on_front: bool = False) -> dict[str, object]:
        """The stored row: one column per label, None where a value is missing."""
        out: dict[str, object] = {"run": columns.run, "trial": self.trial, "state": self.state.value}
        out.update(on_front=on_front, source=str(self.source))
        out["imported_from"] = None if self.imported_from is None else str(self.imported_from)
        complete = self.complete and self.fidelity is not None
        out["fidelity"] = str(self.fidelity) if complete else None
        for group in GROUPS:
            values = getattr(self, group)
            out.update({name: values.get(label) for label, name in columns.names(group).items()})
        out.update({name: getattr(self, name) for name in TIMINGS})
        out.update(
            worker=self.worker,
            device=self.device,
            driver=self.driver,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
        )
        return out

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], columns: Columns) -> TrialRecord:
        """A stored row (from Parquet or a frame); columns an older run lacks read as missing (an old-style
        ``warm:`` source says where its import came from)."""
        value: dict[str, Any] = {
            name: _present(row.get(name)) for name in ("fidelity", "driver", "error", "imported_from", *TIMINGS)
        }
        timings: dict[str, Any] = {name: None if value[name] is None else float(value[name]) for name in TIMINGS}
        groups: dict[str, Any] = {
            group: {
                label: kind(v)
                for label, name in columns.names(group).items()
                if (v := _present(row.get(name))) is not None
            }
            for group in GROUPS
            for kind in [int if group == "samples" else float]
        }
        source = TrialSource.parse(str(row["source"]))
        ref = value["imported_from"]
        return cls(
            trial=int(row["trial"]),
            state=TrialState(row["state"]),
            source=source,
            imported_from=source.imported_from if ref is None else TrialRef.parse(ref),
            fidelity=None if value["fidelity"] is None else Fidelity.parse(value["fidelity"]),
            worker=_present(row.get("worker")),
            device=_present(row.get("device")),
            driver=value["driver"],
            error=value["error"],
            started_at=_datetime(row["started_at"]),
            finished_at=_datetime(row["finished_at"]),
            **timings,
            **groups,
        )
