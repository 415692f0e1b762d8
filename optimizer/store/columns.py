"""The columns of ``trials.parquet`` and ``front.parquet``: which labels a run has, what each value's column is
called, and the schema with its metadata.

Column names are ``<group>__<label>`` with the label's characters outside ``[A-Za-z0-9_]`` written ``_``
(``score__toy_add_perplexity``), so DuckDB, Spark or SQLite read them without quoting while pandas still gets one
column per value; two labels that would collide get ``_2``, ``_3``. Files written before this layout (``layout``
absent from the metadata) used ``score.<label>`` and still read. The metadata holds the labels as JSON under
``mergefront`` (what a reader needs without ``run.json``) and, as plain key/values, the run name and each score
column's direction (``direction.score__add = maximize``), which ``parquet_kv_metadata`` lists in DuckDB.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

LAYOUT = 2  # column names <group>__<label>; 1: the dotted names of the first runs
# group: (column prefix, prefix in layout 1 or None when that layout had no such columns, Arrow type)
GROUPS: dict[str, tuple[str, str | None, pa.DataType]] = {
    "weights": ("weight__", "weight.", pa.float64()),
    "knobs": ("knob__", "knob.", pa.float64()),
    "scores": ("score__", "score.", pa.float64()),
    "stderr": ("stderr__", "stderr.", pa.float64()),
    "predicted": ("predicted__", "predicted.", pa.float64()),
    "samples": ("samples__", None, pa.int64()),
    "held_out": ("held_out__", "report.", pa.float64()),
    "held_out_stderr": ("held_out_stderr__", "report_stderr.", pa.float64()),
}
# labels in the JSON metadata, by field (held-out tasks keep their former key, ``report``, so old runs read alike)
META_NAMES = {
    "weights": "weights",
    "objectives": "objectives",
    "directions": "directions",
    "knobs": "knobs",
    "held_out": "report",
    "held_out_directions": "held_out_directions",
}
META_KEY = b"mergefront"
TIMINGS = ("merge_seconds", "swap_seconds", "eval_seconds")


def _sql(label: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", label)


@dataclass(frozen=True)
class Columns:
    """The run-specific part of the schema: weight labels, knobs, objectives (with directions), held-out tasks (with
    directions, '' where none is known), the run's name, and the layout of the column names."""

    weights: tuple[str, ...]
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    knobs: tuple[str, ...] = ()
    held_out: tuple[str, ...] = ()
    held_out_directions: tuple[str, ...] = ()
    run: str = ""
    layout: int = field(default=LAYOUT, compare=False)

    def labels(self, group: str) -> tuple[str, ...]:
        """The labels of one group of values (``scores``, ``stderr``, ``predicted`` and ``samples`` are per
        objective)."""
        by_group = {"weights": self.weights, "knobs": self.knobs, "held_out": self.held_out}
        by_group["held_out_stderr"] = self.held_out
        return by_group.get(group, self.objectives)

    def names(self, group: str) -> dict[str, str]:
        """Each label of ``group`` and its column, in label order (empty for a group this layout did not store)."""
        new, old, _ = GROUPS[group]
        labels = self.labels(group)
        if self.layout < LAYOUT:
            return {} if old is None else {label: old + label for label in labels}
        names: dict[str, str] = {}
        for label in labels:
            name, n = new + _sql(label), 1
            while name.lower() in {v.lower() for v in names.values()}:  # SQL engines fold case
                n += 1
                name = f"{new}{_sql(label)}_{n}"
            names[label] = name
        return names

    def direction_of(self, label: str) -> str:
        """An objective's or held-out task's direction ('' for a held-out task whose direction is unknown)."""
        if label in self.objectives:
            return self.directions[self.objectives.index(label)]
        known = dict(zip(self.held_out, self.held_out_directions, strict=False))
        return known.get(label, "")

    def schema(self) -> pa.Schema:
        """The Arrow schema of ``trials.parquet`` and ``front.parquet`` in this layout, with the labels in its
        metadata so a reader needs no ``run.json``."""

        def group(*names: str) -> list[pa.Field]:
            return [pa.field(c, GROUPS[g][2]) for g in names for c in self.names(g).values()]

        fields = [
            pa.field("run", pa.string()),
            pa.field("trial", pa.int64(), nullable=False),
            pa.field("state", pa.string(), nullable=False),
            pa.field("on_front", pa.bool_()),
            pa.field("source", pa.string()),
            pa.field("imported_from", pa.string()),
            *group("weights", "knobs"),
            pa.field("fidelity", pa.string()),
            *group("scores", "stderr", "predicted", "held_out", "held_out_stderr", "samples"),
            *(pa.field(name, pa.float64()) for name in TIMINGS),
            pa.field("worker", pa.string()),
            pa.field("device", pa.string()),
            pa.field("driver", pa.string()),
            pa.field("started_at", pa.timestamp("us", tz="UTC")),
            pa.field("finished_at", pa.timestamp("us", tz="UTC")),
            pa.field("error", pa.string()),
        ]
        meta: dict[str, Any] = {stored: getattr(self, name) for name, stored in META_NAMES.items()}
        plain = {f"direction.{c}": self.direction_of(o) for o, c in self.names("scores").items()}
        plain.update({f"direction.{c}": self.direction_of(t) for t, c in self.names("held_out").items()})
        metadata = {META_KEY: json.dumps({**meta, "layout": self.layout, "run": self.run}).encode()}
        metadata.update({k.encode(): v.encode() for k, v in {"run": self.run, **plain}.items() if v})
        return pa.schema(fields, metadata=metadata)

    @classmethod
    def from_schema(cls, schema: pa.Schema) -> Columns:
        """The labels and layout a stored table was written with (its schema's metadata)."""
        meta = json.loads((schema.metadata or {})[META_KEY])
        names = {stored: name for name, stored in META_NAMES.items()}
        labels = {names[k]: tuple(v) for k, v in meta.items() if k in names}
        return cls(**labels, run=str(meta.get("run", "")), layout=int(meta.get("layout", 1)))
