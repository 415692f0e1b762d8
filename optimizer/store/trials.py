"""The Parquet trial store: every finished trial in ``trials.parquet``, the front in ``front.parquet``.

Optuna's storage holds the study state; this is a derived, flat, analysis-friendly copy.
Each write goes to a temporary file that is fsynced and renamed over the old one, so a
reader never sees a partial file. Several drivers of one study (``mergefront join``) share the
files: a write holds an ``flock`` on ``.trials.lock`` and first rereads what the others wrote.
Column layout (one flat column per value; names from ``optimizer.store.columns``, which SQL engines read unquoted):

    run, trial, state, on_front, source, imported_from, weight__<label>..., knob__<knob>..., fidelity,
    score__<objective>..., stderr__<objective>..., predicted__<objective>..., held_out__<task>...,
    held_out_stderr__<task>..., samples__<objective>..., merge_seconds, swap_seconds, eval_seconds, worker, device,
    driver, started_at, finished_at, error

Rows are sorted by trial; ``on_front`` says whether the trial is on the front as of the last write.
``imported_from`` is ``<run>#<trial>`` for a trial a warm start imported (the run and trial that
evaluated it; its ``source`` is the one it had there), null for a trial evaluated in this run.
``fidelity`` is ``full`` or ``screen:<n>`` (scores on a seeded subset of n examples per task);
the front holds full-fidelity trials only. ``predicted__*`` are a surrogate's predictions for
the trial, never measurements. ``held_out__*`` are scored for front trials only; ``samples__*`` count the examples
each objective was scored on. Files of older runs (dotted names, ``report.<task>``) still read, and a run that
continues is rewritten in this layout. The row itself (states, fidelities, sources) is defined in
``optimizer.store.rows``; readers get a ``TrialTable``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from evaluators.core.errors import ConfigError
from evaluators.core.registry import did_you_mean
from optimizer.store.columns import LAYOUT, META_KEY, TIMINGS, Columns
from optimizer.store.pareto import pareto_mask
from optimizer.store.rows import INTERRUPTIONS, TrialRecord, TrialSource, TrialState

TRIALS = "trials.parquet"
FRONT = "front.parquet"
LOCK = ".trials.lock"


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read(path: Path) -> pa.Table:
    """Read through one open file: a running search replaces the file at any moment, and a reader
    that opened it twice (footer, then pages) could mix two versions."""
    with path.open("rb") as fh:
        return pq.read_table(fh)


def front_of(records: Sequence[TrialRecord], columns: Columns) -> list[TrialRecord]:
    """Complete full-fidelity trials that no other such trial dominates, in stored order."""
    done = [r for r in records if r.complete and r.fidelity is not None and r.fidelity.is_full]
    if not done:
        return []
    values = np.array([[r.scores.get(o) for o in columns.objectives] for r in done], dtype=float)
    mask = pareto_mask(values, [d == "maximize" for d in columns.directions])
    return [r for r, keep in zip(done, mask, strict=True) if keep]


class TrialStore:
    """Appends trials and rewrites the front after each one; the trials are kept in memory too.

    A store opened on a run that already has ``trials.parquet`` (resume, join) starts from its
    trials; before each write it takes the lock and rereads the file if another driver replaced it.
    """

    def __init__(self, run_dir: Path, columns: Columns) -> None:
        self.run_dir = run_dir
        self.columns = replace(columns, layout=LAYOUT)  # an older run's file is rewritten in today's layout
        self._schema = self.columns.schema()
        self._path = run_dir / TRIALS
        self._records: list[TrialRecord] = []
        self._front: list[TrialRecord] = []
        self._seen: tuple[int, int, int] | None = None
        with self._locked():
            if self._path.is_file():
                self._refresh()
            else:
                self._write()  # a run that stops before its first trial still has (empty) tables

    @property
    def records(self) -> list[TrialRecord]:
        """Every stored trial, in stored order (as of this driver's last read or write)."""
        return self._records

    def table(self) -> pa.Table:
        """The records as an Arrow table in the run's schema, sorted by trial, ``on_front`` as of the last write."""
        return self._table(self._records)

    def front(self) -> pa.Table:
        """The current front as stored in ``front.parquet`` (kept from the last write, not recomputed)."""
        return self._table(self._front)

    def front_records(self) -> list[TrialRecord]:
        """The current front's trials (kept from the last write, not recomputed)."""
        return self._front

    def find(self, trial: int) -> TrialRecord | None:
        """The stored record of trial number ``trial``, or None."""
        return next((r for r in self._records if r.trial == trial), None)

    def append(self, record: TrialRecord) -> pa.Table:
        """Store one trial and return the new front; a trial number is stored once only."""

        def add(records: list[TrialRecord]) -> None:
            if self.find(record.trial) is not None:
                raise ValueError(f"trial {record.trial} is already stored")
            records.append(record)

        return self._update(add)

    def set_held_out(self, trial: int, scores: dict[str, float], stderr: dict[str, float | None]) -> pa.Table:
        """Add held-out scores to a stored trial."""

        def add(records: list[TrialRecord]) -> None:
            row = self.find(trial)
            if row is None:
                raise ValueError(f"trial {trial} is not stored")
            held_out = {r: scores[r] for r in self.columns.held_out}
            held_out_stderr = {r: stderr.get(r) for r in self.columns.held_out}
            records[records.index(row)] = replace(row, held_out=held_out, held_out_stderr=held_out_stderr)

        return self._update(add)

    def _table(self, records: Sequence[TrialRecord]) -> pa.Table:
        front = {r.trial for r in self._front}
        rows = [r.row(self.columns, r.trial in front) for r in sorted(records, key=lambda r: r.trial)]
        return pa.Table.from_pylist(rows, schema=self._schema)

    def _locked(self) -> FileLock:
        """An exclusive ``flock`` on the run's lock file (the kernel releases it if the holder dies)."""
        return FileLock(self.run_dir / LOCK)

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self._path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _refresh(self) -> None:
        """Reread the file when another driver replaced it since our last read or write."""
        if self._stat() != self._seen:
            table = _read(self._path)
            # an older run's file reads in its own layout; one rewritten without our metadata, in this run's
            stored = Columns.from_schema(table.schema) if META_KEY in (table.schema.metadata or {}) else self.columns
            self._records = [TrialRecord.from_row(r, stored) for r in table.to_pylist()]
            self._seen = self._stat()
            self._front = front_of(self._records, self.columns)

    def _update(self, change: Callable[[list[TrialRecord]], None]) -> pa.Table:
        with self._locked():
            self._refresh()
            change(self._records)
            return self._write()

    def _write(self) -> pa.Table:
        self._front = front_of(self._records, self.columns)
        _write_atomic(self.table(), self._path)
        self._seen = self._stat()
        front = self.front()
        _write_atomic(front, self.run_dir / FRONT)
        return front


@dataclass(frozen=True)
class TrialTable:
    """Stored trials as read for analysis: ``records()`` gives typed rows, the other accessors give
    frames whose columns are plain labels (objectives, weight labels, knobs, held-out tasks) and whose
    index is shared, and the filters give smaller tables. ``columns`` names the run's labels."""

    columns: Columns
    _frame: pd.DataFrame

    @classmethod
    def of(cls, columns: Columns, records: Sequence[TrialRecord]) -> TrialTable:
        """A table of ``records`` (as stored, without writing them)."""
        rows = pa.Table.from_pylist([r.row(columns, False) for r in records], schema=columns.schema())
        return cls(columns, rows.to_pandas())

    def __len__(self) -> int:
        return len(self._frame)

    @property
    def numbers(self) -> list[int]:
        """The trial numbers, in table order."""
        return [int(t) for t in self._frame["trial"]]

    def records(self) -> list[TrialRecord]:
        """Every row as a typed record, in table order."""
        return [TrialRecord.from_row(row, self.columns) for row in self._frame.to_dict("records")]

    def find(self, trial: int) -> TrialRecord | None:
        """The record of trial number ``trial``, or None."""
        rows = self._frame[self._frame["trial"] == trial]
        return None if rows.empty else TrialRecord.from_row(rows.iloc[0].to_dict(), self.columns)

    def _group(self, group: str) -> pd.DataFrame:
        names = self.columns.names(group)
        return self._frame[list(names.values())].set_axis(list(names), axis=1)

    def scores(self) -> pd.DataFrame:
        """Objective values, one column per objective label."""
        return self._group("scores")

    def stderr(self) -> pd.DataFrame:
        """Standard errors of the objective values (null where the scorer gives none)."""
        return self._group("stderr")

    def weights(self) -> pd.DataFrame:
        """Merge weights, one column per weight label (member or group)."""
        return self._group("weights")

    def knobs(self) -> pd.DataFrame:
        """Merge-method parameter values, one column per stored parameter key."""
        return self._group("knobs")

    def held_out(self) -> pd.DataFrame:
        """Held-out task scores (filled for front trials only), one column per task label."""
        return self._group("held_out")

    def timings(self) -> pd.DataFrame:
        """Merge, swap and evaluation seconds (runs before ``swap_seconds`` lack it)."""
        return self._frame[[c for c in TIMINGS if c in self._frame]]

    def span_seconds(self) -> float:
        """From the first trial's start to the last trial's end (0 without trials)."""
        frame = self._frame
        return (frame["finished_at"].max() - frame["started_at"].min()).total_seconds() if len(frame) else 0.0

    def count(self, state: TrialState) -> int:
        """How many rows are in ``state``."""
        return int((self._frame["state"] == state.value).sum())

    def interrupted(self) -> int:
        """How many rows were cut short by their driver's stop and queued again (failed, but not for their weights)."""
        return int(self._frame["error"].isin(INTERRUPTIONS).sum())

    def where(self, mask: pd.Series | Sequence[bool]) -> TrialTable:
        """The rows where ``mask`` (one boolean per row, in table order) holds."""
        return TrialTable(self.columns, self._frame[np.asarray(list(mask), dtype=bool)])

    def _sources(self) -> list[TrialSource]:
        return [TrialSource.parse(str(s)) for s in self._frame["source"]]

    def complete(self) -> TrialTable:
        """The trials that finished with scores."""
        return self.where(self._frame["state"] == TrialState.COMPLETE.value)

    def full(self) -> TrialTable:
        """Complete trials scored on the full task sets."""
        return self.where([r.full for r in self.records()])

    def imported(self) -> TrialTable:
        """The trials a warm start imported from earlier runs."""
        return self.where([r.imported for r in self.records()])

    def singles(self) -> TrialTable:
        """The single-checkpoint baselines."""
        return self.where([s.is_single for s in self._sources()])

    def merges(self) -> TrialTable:
        """Trials that are not a single checkpoint."""
        return self.where([not s.is_single for s in self._sources()])

    def baselines(self) -> TrialTable:
        """The single checkpoints and the uniform average."""
        return self.where([s.is_baseline for s in self._sources()])

    def sorted_by(self, key: str | None) -> TrialTable:
        """Sorted (stable) by an objective or held-out task, best first (a held-out task of unknown direction: highest
        first; trials without a held-out score last), or by ``trial`` number; default the first objective."""
        columns = self.columns
        key = key or columns.objectives[0]
        if key == "trial":
            return TrialTable(columns, self._frame.sort_values("trial", kind="stable"))
        if key not in (*columns.objectives, *columns.held_out):
            choices = [*columns.objectives, *columns.held_out, "trial"]
            raise ConfigError(
                f"cannot sort by '{key}'{did_you_mean(key, choices)}: sort by an objective, a held-out task or 'trial' "
                f"({', '.join(choices)})"
            )
        values = (self.scores() if key in columns.objectives else self.held_out())[key]
        ascending = columns.direction_of(key) == "minimize"
        order = values.sort_values(ascending=ascending, kind="stable", na_position="last").index
        return TrialTable(columns, self._frame.loc[order])


def read_trials(run_dir: Path, name: str = FRONT) -> TrialTable:
    """Read ``front.parquet`` or ``trials.parquet`` of a run."""
    path = run_dir / name
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; is {run_dir} a run directory written by `mergefront search`?")
    try:
        table = _read(path)
        return TrialTable(Columns.from_schema(table.schema), table.to_pandas())
    except (pa.ArrowException, KeyError, ValueError) as exc:  # not Parquet, or not ours
        raise ConfigError(
            f"{path} cannot be read as a mergefront trial table ({str(exc).splitlines()[0]}); restore it from a copy "
            "of the run"
        ) from None
