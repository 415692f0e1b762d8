"""The Parquet trial store: every finished trial in ``trials.parquet``, the front in ``front.parquet``.

Optuna's storage holds the study state; this is a derived, flat, analysis-friendly copy.
Each write goes to a temporary file that is fsynced and renamed over the old one, so a
reader never sees a partial file. Column layout (one flat column per weight and objective):

    trial, state, source, weight.<member>..., score.<objective>..., stderr.<objective>...,
    merge_seconds, eval_seconds, worker, device, started_at, finished_at, error

Objective names and directions are kept in the Parquet schema metadata under ``mergefront``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from evaluators.errors import ConfigError
from optimizer.front import pareto_mask

TRIALS = "trials.parquet"
FRONT = "front.parquet"
META_KEY = b"mergefront"
WEIGHT, SCORE, STDERR = "weight.", "score.", "stderr."


@dataclass(frozen=True)
class Columns:
    """The run-specific part of the schema: members and objectives (with directions)."""

    members: tuple[str, ...]
    objectives: tuple[str, ...]
    directions: tuple[str, ...]

    def schema(self) -> pa.Schema:
        fields = [
            pa.field("trial", pa.int64(), nullable=False),
            pa.field("state", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            *(pa.field(WEIGHT + m, pa.float64()) for m in self.members),
            *(pa.field(SCORE + o, pa.float64()) for o in self.objectives),
            *(pa.field(STDERR + o, pa.float64()) for o in self.objectives),
            pa.field("merge_seconds", pa.float64()),
            pa.field("eval_seconds", pa.float64()),
            pa.field("worker", pa.string()),
            pa.field("device", pa.string()),
            pa.field("started_at", pa.timestamp("us", tz="UTC")),
            pa.field("finished_at", pa.timestamp("us", tz="UTC")),
            pa.field("error", pa.string()),
        ]
        meta = {"members": self.members, "objectives": self.objectives, "directions": self.directions}
        return pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})

    @classmethod
    def from_schema(cls, schema: pa.Schema) -> Columns:
        meta = json.loads((schema.metadata or {})[META_KEY])
        return cls(tuple(meta["members"]), tuple(meta["objectives"]), tuple(meta["directions"]))


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial as it is stored; scores are None when the trial failed."""

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

    def row(self, columns: Columns) -> dict[str, object]:
        out: dict[str, object] = {"trial": self.trial, "state": self.state, "source": self.source}
        out.update({WEIGHT + m: self.weights.get(m) for m in columns.members})
        out.update({SCORE + o: self.scores.get(o) for o in columns.objectives})
        out.update({STDERR + o: self.stderr.get(o) for o in columns.objectives})
        out.update(
            merge_seconds=self.merge_seconds,
            eval_seconds=self.eval_seconds,
            worker=self.worker,
            device=self.device,
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


def front_of(table: pa.Table, columns: Columns) -> pa.Table:
    """Rows of complete trials that no other complete trial dominates."""
    complete = table.filter(pc.equal(table["state"], "COMPLETE"))
    if complete.num_rows == 0:
        return complete
    values = np.column_stack([complete[SCORE + o].to_numpy(zero_copy_only=False) for o in columns.objectives])
    mask = pareto_mask(values.astype(float), [d == "maximize" for d in columns.directions])
    return complete.filter(pa.array(mask))


class TrialStore:
    """Appends trials and rewrites the front after each one; rows are kept in memory too."""

    def __init__(self, run_dir: Path, columns: Columns) -> None:
        self.run_dir = run_dir
        self.columns = columns
        self._schema = columns.schema()
        self._rows: list[dict[str, object]] = []

    def append(self, record: TrialRecord) -> pa.Table:
        """Store one trial and return the new front."""
        self._rows.append(record.row(self.columns))
        table = pa.Table.from_pylist(self._rows, schema=self._schema)
        _write_atomic(table, self.run_dir / TRIALS)
        front = front_of(table, self.columns)
        _write_atomic(front, self.run_dir / FRONT)
        return front


def read_table(run_dir: Path, name: str = FRONT) -> tuple[Columns, pd.DataFrame]:
    """Read ``front.parquet`` or ``trials.parquet`` of a run, with its column metadata."""
    path = run_dir / name
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; is {run_dir} a run directory written by `mergefront search`?")
    table = pq.read_table(path)
    return Columns.from_schema(table.schema), table.to_pandas()


def sort_front(frame: pd.DataFrame, columns: Columns, by: str | None) -> pd.DataFrame:
    """Front rows sorted by one objective (best first), default the first objective."""
    objective = by or columns.objectives[0]
    if objective not in columns.objectives:
        raise ConfigError(f"cannot sort by '{objective}': objectives are {', '.join(columns.objectives)}")
    ascending = columns.directions[columns.objectives.index(objective)] == "minimize"
    return frame.sort_values(SCORE + objective, ascending=ascending, kind="stable")
