"""The Parquet store: schema round-trip, failed trials, the front file, atomic writes, several writers."""

import json
import multiprocessing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optimizer.store.columns import Columns
from optimizer.store.rows import Fidelity, TrialRecord, TrialRef, TrialSource, TrialState
from optimizer.store.trials import FRONT, LOCK, TRIALS, TrialStore, TrialTable, read_trials

COLUMNS = Columns(weights=("m1", "m2"), objectives=("task/acc", "ppl"), directions=("maximize", "minimize"))
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def record(n: int, acc: float | None, ppl: float | None, error: str | None = None) -> TrialRecord:
    ok = error is None
    return TrialRecord(
        trial=n,
        state=TrialState.COMPLETE if ok else TrialState.FAIL,
        source=TrialSource.sampler(),
        weights={"m1": 0.25 * n, "m2": 1 - 0.25 * n},
        scores={"task/acc": acc, "ppl": ppl} if ok else {},  # type: ignore[dict-item]
        stderr={"task/acc": 0.01} if ok else {},  # a missing stderr is stored as null and read as absent
        merge_seconds=0.5 if ok else None,
        eval_seconds=2.0 if ok else None,
        worker="worker-0" if ok else None,
        device="cpu" if ok else None,
        started_at=T0,
        finished_at=T0,
        error=error,
        fidelity=Fidelity.FULL if ok else None,
    )


def test_round_trip_schema_and_values(tmp_path: Path) -> None:
    store = TrialStore(tmp_path, COLUMNS)
    store.append(record(0, 0.5, 10.0))
    store.append(record(1, None, None, error="boom"))
    store.append(record(2, 0.7, 12.0))
    table = pq.read_table(tmp_path / TRIALS)
    assert table.schema.equals(COLUMNS.schema(), check_metadata=True)
    frame = table.to_pandas()  # the stored format itself
    assert frame["trial"].tolist() == [0, 1, 2]
    assert frame["state"].tolist() == ["COMPLETE", "FAIL", "COMPLETE"]
    assert frame["weight__m1"].tolist() == [0.0, 0.25, 0.5]
    assert frame["score__task_acc"].tolist()[0] == 0.5 and frame["score__ppl"].tolist()[2] == 12.0
    assert frame["stderr__task_acc"].tolist()[0] == 0.01
    assert frame["stderr__ppl"].isna().all()
    assert frame.loc[1, "error"] == "boom" and frame.loc[1, "score__task_acc"] != frame.loc[1, "score__task_acc"]
    assert frame.loc[0, "started_at"] == T0
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK, FRONT, TRIALS]  # no temporary files left
    read = read_trials(tmp_path, TRIALS)
    assert read.columns == COLUMNS
    assert read.records() == [record(0, 0.5, 10.0), record(1, None, None, error="boom"), record(2, 0.7, 12.0)]
    assert TrialStore(tmp_path, COLUMNS).records == read.records()  # a reopened store reads the same trials


def test_front_file_holds_the_non_dominated_complete_trials(tmp_path: Path) -> None:
    store = TrialStore(tmp_path, COLUMNS)
    store.append(record(0, 0.5, 10.0))
    store.append(record(1, 0.4, 11.0))  # dominated by trial 0 (lower acc, higher ppl)
    store.append(record(2, 0.7, 12.0))  # a trade-off against trial 0
    store.append(record(3, None, None, error="boom"))
    front = read_trials(tmp_path, FRONT)
    assert sorted(front.numbers) == [0, 2] and [r.trial for r in store.front_records()] == [0, 2]
    assert front.sorted_by("ppl").numbers == [0, 2]
    assert front.sorted_by(None).numbers == [2, 0]
    assert front.sorted_by(None).scores().to_dict("list") == {"task/acc": [0.7, 0.5], "ppl": [12.0, 10.0]}


def test_reading_a_missing_run_is_a_config_error(tmp_path: Path) -> None:
    from evaluators.core.errors import ConfigError

    with pytest.raises(ConfigError, match="run directory written by"):
        read_trials(tmp_path)


def _append_many(run_dir: Path, numbers: list[int]) -> None:
    store = TrialStore(run_dir, COLUMNS)
    for n in numbers:
        store.append(record(n, 0.5, 10.0 + n))


def test_two_processes_share_one_store_without_losing_or_doubling_a_row(tmp_path: Path) -> None:
    """Two drivers of one study write one store: each write rereads what the other wrote, under a lock."""
    TrialStore(tmp_path, COLUMNS)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(tmp_path, list(range(start, 60, 2)))) for start in (0, 1)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=600)  # bounds a hang only
        assert w.exitcode == 0, "a writer failed, or hung for 600 s"
    trials = read_trials(tmp_path, TRIALS).numbers
    assert sorted(trials) == list(range(60))

    late = TrialStore(tmp_path, COLUMNS)  # opened before another writer adds trial 60
    _append_many(tmp_path, [60])
    with pytest.raises(ValueError, match="trial 60 is already stored"):
        late.append(record(60, 0.1, 1.0))


def test_states_fidelities_and_sources_read_back_what_they_write() -> None:
    assert TrialState("COMPLETE") is TrialState.COMPLETE and TrialState.FAIL == "FAIL"
    assert Fidelity.parse("full") == Fidelity.FULL and Fidelity.FULL.is_full and str(Fidelity.FULL) == "full"
    assert Fidelity.parse("screen:8") == Fidelity(8) and not Fidelity(8).is_full and str(Fidelity(8)) == "screen:8"
    for text in ("single:add", "uniform", "sampler", "warm:tiny#3", "warm:tiny-2#12", "single:group/with:colon"):
        assert str(TrialSource.parse(text)) == text
    single = TrialSource.parse("single:add")
    assert single == TrialSource.single("add") and single.is_single and single.is_baseline
    assert single.checkpoint == single.short == "add"
    uniform = TrialSource.uniform()
    assert uniform.is_baseline and not uniform.is_single and uniform.checkpoint is None and uniform.short == "uniform"
    assert TrialSource.sampler().is_sampler and not TrialSource.sampler().is_baseline
    warm = TrialSource.parse("warm:tiny#3")  # what runs before imported_from stored for an import
    assert warm.imported_from == TrialRef("tiny", 3) and not warm.is_baseline and single.imported_from is None
    for text in ("tiny#3", "tiny-2#12", "odd#name#0"):
        assert str(TrialRef.parse(text)) == text
    assert TrialRef.parse("odd#name#0") == TrialRef("odd#name", 0)
    for bad in ("single:", "warm:tiny", "warm:#3", "random", "screen:x"):
        with pytest.raises(ValueError, match="unknown"):
            TrialSource.parse(bad) if bad != "screen:x" else Fidelity.parse(bad)
    for bad in ("tiny", "#3", "tiny#x", "tiny#"):
        with pytest.raises(ValueError, match="unknown trial reference"):
            TrialRef.parse(bad)


def test_a_table_gives_frames_keyed_by_label_and_typed_filters(tmp_path: Path) -> None:
    columns = Columns(weights=("a", "b"), objectives=("acc",), directions=("maximize",), knobs=("scale",))
    made = [
        TrialRecord(
            trial=n,
            state=TrialState.COMPLETE,
            source=source,
            weights={"a": 1.0 - 0.5 * n, "b": 0.5 * n},
            knobs={"scale": 1.0},
            scores={"acc": 0.1 * n},
            stderr={},
            merge_seconds=1.0,
            eval_seconds=2.0,
            worker="w",
            device="cpu",
            started_at=T0,
            finished_at=T0,
            fidelity=fidelity,
            imported_from=TrialRef("old", 7) if n == 3 else None,
        )
        for n, (source, fidelity) in enumerate(
            [
                (TrialSource.single("a"), Fidelity.FULL),
                (TrialSource.uniform(), Fidelity.FULL),
                (TrialSource.sampler(), Fidelity(4)),
                (TrialSource.single("b"), Fidelity.FULL),  # imported: a baseline all the same
            ]
        )
    ]
    table = TrialTable.of(columns, made)
    assert list(table.weights().columns) == ["a", "b"] and list(table.scores().columns) == ["acc"]
    assert table.knobs()["scale"].tolist() == [1.0] * 4 and table.timings()["swap_seconds"].isna().all()
    assert table.singles().numbers == [0, 3] and table.baselines().numbers == [0, 1, 3]
    assert table.merges().numbers == [1, 2] and table.imported().numbers == [3]
    assert table.full().numbers == [0, 1, 3] and table.count(TrialState.COMPLETE) == 4
    assert table.find(3) == made[3] and table.find(9) is None
    assert table.where([False] * 4).records() == [] and len(table.where([False] * 4).scores()) == 0
    assert (
        TrialRecord.failure("x", trial=5, source=TrialSource.sampler(), weights={}, started_at=T0, finished_at=T0).full
        is False
    )


def test_a_table_in_the_old_layout_still_loads(tmp_path: Path) -> None:
    """A trials.parquet written by hand with pyarrow, as an early run wrote it: no knob, predicted, report,
    samples, swap_seconds or driver columns, and no knobs or report in the metadata."""
    meta = {"weights": ["m1", "m2"], "objectives": ["acc"], "directions": ["maximize"]}
    schema = pa.schema(
        [
            pa.field("trial", pa.int64(), nullable=False),
            pa.field("state", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            pa.field("weight.m1", pa.float64()),
            pa.field("weight.m2", pa.float64()),
            pa.field("fidelity", pa.string()),
            pa.field("score.acc", pa.float64()),
            pa.field("stderr.acc", pa.float64()),
            pa.field("merge_seconds", pa.float64()),
            pa.field("eval_seconds", pa.float64()),
            pa.field("worker", pa.string()),
            pa.field("device", pa.string()),
            pa.field("started_at", pa.timestamp("us", tz="UTC")),
            pa.field("finished_at", pa.timestamp("us", tz="UTC")),
            pa.field("error", pa.string()),
        ],
        metadata={b"mergefront": json.dumps(meta).encode()},
    )
    rows = [
        [0, "COMPLETE", "single:m1", 1.0, 0.0, "full", 0.5, 0.01, 0.1, 1.0, "worker-0", "cpu", T0, T0, None],
        [1, "COMPLETE", "warm:old#4", 0.5, 0.5, "screen:8", 0.9, None, 0.1, 1.0, "worker-0", "cpu", T0, T0, None],
        [2, "FAIL", "sampler", None, None, None, None, None, None, None, None, None, T0, T0, "boom"],
        [3, "COMPLETE", "uniform", 0.5, 0.5, "full", 0.6, 0.02, 0.1, 1.0, "worker-0", "cpu", T0, T0, None],
    ]
    pq.write_table(
        pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema), tmp_path / TRIALS
    )
    table = read_trials(tmp_path, TRIALS)
    assert table.columns == Columns(weights=("m1", "m2"), objectives=("acc",), directions=("maximize",))
    first, warm, failed, uniform = table.records()
    assert uniform.source.is_baseline and not uniform.source.is_single
    assert first.source.checkpoint == "m1" and first.weights == {"m1": 1.0, "m2": 0.0} and first.stderr == {"acc": 0.01}
    assert first.swap_seconds is None and first.samples == {} and first.driver is None and first.started_at == T0
    assert str(warm.source) == "warm:old#4" and warm.fidelity == Fidelity(8) and warm.stderr == {}
    assert warm.imported_from == TrialRef("old", 4) and table.imported().numbers == [1]
    assert (
        failed.state is TrialState.FAIL and failed.fidelity is None and failed.weights == {} and failed.error == "boom"
    )
    assert table.full().numbers == [0, 3] and table.timings().columns.tolist() == ["merge_seconds", "eval_seconds"]
    store = TrialStore(tmp_path, table.columns)  # resuming such a run: the front is rebuilt from the old rows
    assert [r.trial for r in store.front_records()] == [3]
    assert store.records == table.records()


def test_sql_engines_read_both_files_without_quoting(tmp_path: Path) -> None:
    """DuckDB reads the stored names unquoted (labels with '/', '-' or '.' included), the rows come sorted by
    trial with the run and on_front columns, and the directions are plain key/value metadata; pandas still gets
    one column per value."""
    import duckdb

    columns = Columns(
        weights=("m-1", "m.2"),
        objectives=("task/acc", "ppl"),
        directions=("maximize", "minimize"),
        held_out=("held/acc",),
        held_out_directions=("maximize",),
        run="demo",
    )
    store = TrialStore(tmp_path, columns)
    for n, acc, ppl in ((2, 0.7, 12.0), (0, 0.5, 10.0), (1, 0.4, 11.0)):  # stored out of order
        store.append(replace(record(n, acc, ppl), weights={"m-1": 0.1 * n, "m.2": 1 - 0.1 * n}, stderr={}))
    store.set_held_out(0, {"held/acc": 0.6}, {"held/acc": 0.02})
    front = set(read_trials(tmp_path, FRONT).numbers)
    assert front == {0, 2}  # trial 1 is dominated by trial 0 (lower acc, higher ppl)
    for name in (TRIALS, FRONT):
        path = str(tmp_path / name)
        rows = duckdb.sql(
            f"SELECT run, trial, on_front, weight__m_1, weight__m_2, score__task_acc, score__ppl, held_out__held_acc "
            f"FROM '{path}'"
        ).fetchall()
        expected = [
            (
                "demo",
                n,
                n in front,
                pytest.approx(0.1 * n),
                pytest.approx(1 - 0.1 * n),
                acc,
                ppl,
                0.6 if n == 0 else None,
            )
            for n, acc, ppl in ((0, 0.5, 10.0), (1, 0.4, 11.0), (2, 0.7, 12.0))
            if name == TRIALS or n in front
        ]
        assert rows == expected
        kv = dict(duckdb.sql(f"SELECT key::VARCHAR, value::VARCHAR FROM parquet_kv_metadata('{path}')").fetchall())
        assert kv["run"] == "demo" and kv["direction.score__task_acc"] == "maximize"
        assert kv["direction.score__ppl"] == "minimize" and kv["direction.held_out__held_acc"] == "maximize"
        frame = pd.read_parquet(path)
        assert frame["trial"].is_monotonic_increasing and "score__task_acc" in frame and "score__ppl" in frame
    # labels that would share a column name get their own
    clash = Columns(weights=("a-b", "a_b"), objectives=("x",), directions=("maximize",))
    assert clash.names("weights") == {"a-b": "weight__a_b", "a_b": "weight__a_b_2"}
    folded = Columns(weights=("Add", "add"), objectives=("x",), directions=("maximize",))  # SQL folds case
    assert folded.names("weights") == {"Add": "weight__Add", "add": "weight__add_2"}
