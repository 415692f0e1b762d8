"""The Parquet trial store: every finished trial in ``trials.parquet``, the front in ``front.parquet``.

Optuna's storage holds the study state; this is a derived, flat, analysis-friendly copy.
Each write goes to a temporary file that is fsynced and renamed over the old one, so a
reader never sees a partial file. Several drivers of one study (``mergefront join``) share the
files: a write holds an ``flock`` on ``.trials.lock`` and first rereads what the others wrote.
Column layout (one flat column per weight and objective):

    trial, state, source, weight.<label>..., knob.<knob>..., fidelity, score.<objective>...,
    stderr.<objective>..., predicted.<objective>..., report.<task>..., report_stderr.<task>...,
    samples, merge_seconds, swap_seconds, eval_seconds, worker, device, driver, started_at,
    finished_at, error

``fidelity`` is ``full`` or ``screen:<n>`` (scores on a seeded subset of n examples per task);
the front holds full-fidelity trials only. ``predicted.*`` are a surrogate's predictions for
the trial, never measurements. ``report.*`` are held-out tasks, scored for front trials only.
Names and directions are kept in the Parquet schema metadata under ``mergefront``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from evaluators.core.errors import ConfigError
from optimizer.store.pareto import pareto_mask

TRIALS = "trials.parquet"
FRONT = "front.parquet"
LOCK = ".trials.lock"
META_KEY = b"mergefront"
WEIGHT, KNOB, SCORE, STDERR, PREDICTED = "weight.", "knob.", "score.", "stderr.", "predicted."
REPORT, REPORT_STDERR = "report.", "report_stderr."
FULL = "full"


@dataclass(frozen=True)
class Columns:
    """The run-specific part of the schema: weight labels, knobs, objectives (with directions), report tasks."""

    weights: tuple[str, ...]
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    knobs: tuple[str, ...] = ()
    report: tuple[str, ...] = ()

    def schema(self) -> pa.Schema:
        """The Arrow schema of ``trials.parquet`` and ``front.parquet``, with these columns in its metadata so a
        reader needs no ``run.json``."""
        fields = [
            pa.field("trial", pa.int64(), nullable=False),
            pa.field("state", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            *(pa.field(WEIGHT + m, pa.float64()) for m in self.weights),
            *(pa.field(KNOB + k, pa.float64()) for k in self.knobs),
            pa.field("fidelity", pa.string()),
            *(pa.field(SCORE + o, pa.float64()) for o in self.objectives),
            *(pa.field(STDERR + o, pa.float64()) for o in self.objectives),
            *(pa.field(PREDICTED + o, pa.float64()) for o in self.objectives),
            *(pa.field(REPORT + r, pa.float64()) for r in self.report),
            *(pa.field(REPORT_STDERR + r, pa.float64()) for r in self.report),
            pa.field("samples", pa.int64()),
            pa.field("merge_seconds", pa.float64()),
            pa.field("swap_seconds", pa.float64()),
            pa.field("eval_seconds", pa.float64()),
            pa.field("worker", pa.string()),
            pa.field("device", pa.string()),
            pa.field("driver", pa.string()),
            pa.field("started_at", pa.timestamp("us", tz="UTC")),
            pa.field("finished_at", pa.timestamp("us", tz="UTC")),
            pa.field("error", pa.string()),
        ]
        meta = {name: getattr(self, name) for name in ("weights", "objectives", "directions", "knobs", "report")}
        return pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})

    @classmethod
    def from_schema(cls, schema: pa.Schema) -> Columns:
        """The columns a stored table was written with (its schema's metadata)."""
        meta = json.loads((schema.metadata or {})[META_KEY])
        return cls(**{name: tuple(value) for name, value in meta.items()})


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial as it is stored; scores are empty when the trial failed."""

    trial: int
    state: str
    source: str
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
    fidelity: str | None = FULL
    predicted: dict[str, float] = field(default_factory=dict)
    samples: int | None = None
    swap_seconds: float | None = None
    driver: str | None = None

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
        return cls(state="FAIL", error=error, **empty, **fields)  # type: ignore[arg-type]

    def row(self, columns: Columns) -> dict[str, object]:
        """The record as one table row under ``columns``: missing values are null, report scores are left empty (a
        front trial's are filled in later), and fidelity is null for a failed trial."""
        out: dict[str, object] = {"trial": self.trial, "state": self.state, "source": self.source}
        out.update({WEIGHT + m: self.weights.get(m) for m in columns.weights})
        out.update({KNOB + k: self.knobs.get(k) for k in columns.knobs})
        out["fidelity"] = self.fidelity if self.state == "COMPLETE" else None
        out.update({SCORE + o: self.scores.get(o) for o in columns.objectives})
        out.update({STDERR + o: self.stderr.get(o) for o in columns.objectives})
        out.update({PREDICTED + o: self.predicted.get(o) for o in columns.objectives})
        out.update({REPORT + r: None for r in columns.report})
        out.update({REPORT_STDERR + r: None for r in columns.report})
        out["samples"] = self.samples
        out.update(
            merge_seconds=self.merge_seconds,
            swap_seconds=self.swap_seconds,
            eval_seconds=self.eval_seconds,
            worker=self.worker,
            device=self.device,
            driver=self.driver,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
        )
        return out


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


def front_of(table: pa.Table, columns: Columns) -> pa.Table:
    """Rows of complete full-fidelity trials that no other such trial dominates."""
    complete = table.filter(pc.and_(pc.equal(table["state"], "COMPLETE"), pc.equal(table["fidelity"], FULL)))
    if complete.num_rows == 0:
        return complete
    values = np.column_stack([complete[SCORE + o].to_numpy(zero_copy_only=False) for o in columns.objectives])
    mask = pareto_mask(values.astype(float), [d == "maximize" for d in columns.directions])
    return complete.filter(pa.array(mask))


class TrialStore:
    """Appends trials and rewrites the front after each one; rows are kept in memory too.

    A store opened on a run that already has ``trials.parquet`` (resume, join) starts from its
    rows; before each write it takes the lock and rereads the file if another driver replaced it.
    """

    def __init__(self, run_dir: Path, columns: Columns) -> None:
        self.run_dir = run_dir
        self.columns = columns
        self._schema = columns.schema()
        self._path = run_dir / TRIALS
        self._rows: list[dict[str, object]] = []
        self._seen: tuple[int, int, int] | None = None
        with self._locked():
            if self._path.is_file():
                self._refresh()
            else:
                self._write()  # a run that stops before its first trial still has (empty) tables

    @property
    def rows(self) -> list[dict[str, object]]:
        """Every stored row, oldest first, as of this store's last read or write (another driver's later trials show
        after the next write)."""
        return self._rows

    def table(self) -> pa.Table:
        """The rows as an Arrow table in the run's schema."""
        return pa.Table.from_pylist(self._rows, schema=self._schema)

    def front(self) -> pa.Table:
        """The current front (kept from the last write, not recomputed)."""
        return self._front

    def find(self, trial: int) -> dict[str, object] | None:
        """The stored row of trial number ``trial``, or None."""
        return next((r for r in self._rows if r["trial"] == trial), None)

    def append(self, record: TrialRecord) -> pa.Table:
        """Store one trial and return the new front; a trial number is stored once only."""

        def add(rows: list[dict[str, object]]) -> None:
            if self.find(record.trial) is not None:
                raise ValueError(f"trial {record.trial} is already stored")
            rows.append(record.row(self.columns))

        return self._update(add)

    def set_report(self, trial: int, scores: dict[str, float], stderr: dict[str, float | None]) -> pa.Table:
        """Add held-out report scores to a stored trial."""

        def add(rows: list[dict[str, object]]) -> None:
            row = self.find(trial)
            if row is None:
                raise ValueError(f"trial {trial} is not stored")
            row.update({REPORT + r: scores[r] for r in self.columns.report})
            row.update({REPORT_STDERR + r: stderr.get(r) for r in self.columns.report})

        return self._update(add)

    def _locked(self) -> FileLock:
        """An exclusive ``flock`` on the run's lock file (the kernel releases it if the holder dies)."""
        return FileLock(self.run_dir / LOCK)

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self._path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _refresh(self) -> None:
        """Reread the file when another driver replaced it since our last read or write."""
        if self._stat() != self._seen:
            self._rows = _read(self._path).to_pylist()
            self._seen = self._stat()
            self._front = front_of(self.table(), self.columns)

    def _update(self, change: Callable[[list[dict[str, object]]], None]) -> pa.Table:
        with self._locked():
            self._refresh()
            change(self._rows)
            return self._write()

    def _write(self) -> pa.Table:
        table = self.table()
        _write_atomic(table, self._path)
        self._seen = self._stat()
        self._front = front_of(table, self.columns)
        _write_atomic(self._front, self.run_dir / FRONT)
        return self._front


def read_table(run_dir: Path, name: str = FRONT) -> tuple[Columns, pd.DataFrame]:
    """Read ``front.parquet`` or ``trials.parquet`` of a run, with its column metadata."""
    path = run_dir / name
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; is {run_dir} a run directory written by `mergefront search`?")
    table = _read(path)
    return Columns.from_schema(table.schema), table.to_pandas()


def sort_front(frame: pd.DataFrame, columns: Columns, by: str | None) -> pd.DataFrame:
    """Front rows sorted by one objective (best first), default the first objective."""
    objective = by or columns.objectives[0]
    if objective not in columns.objectives:
        raise ConfigError(f"cannot sort by '{objective}': objectives are {', '.join(columns.objectives)}")
    ascending = columns.directions[columns.objectives.index(objective)] == "minimize"
    return frame.sort_values(SCORE + objective, ascending=ascending, kind="stable")
