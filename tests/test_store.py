"""The Parquet store: schema round-trip, failed trials, the front file, atomic writes, several writers."""

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from optimizer.store.trials import FRONT, LOCK, TRIALS, Columns, TrialRecord, TrialStore, read_table, sort_front

COLUMNS = Columns(weights=("m1", "m2"), objectives=("task/acc", "ppl"), directions=("maximize", "minimize"))
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def record(n: int, acc: float | None, ppl: float | None, error: str | None = None) -> TrialRecord:
    ok = error is None
    return TrialRecord(
        trial=n,
        state="COMPLETE" if ok else "FAIL",
        source="sampler",
        weights={"m1": 0.25 * n, "m2": 1 - 0.25 * n},
        scores={"task/acc": acc, "ppl": ppl} if ok else {},
        stderr={"task/acc": 0.01, "ppl": None} if ok else {},
        merge_seconds=0.5 if ok else None,
        eval_seconds=2.0 if ok else None,
        worker="worker-0" if ok else None,
        device="cpu" if ok else None,
        started_at=T0,
        finished_at=T0,
        error=error,
    )


def test_round_trip_schema_and_values(tmp_path: Path) -> None:
    store = TrialStore(tmp_path, COLUMNS)
    store.append(record(0, 0.5, 10.0))
    store.append(record(1, None, None, error="boom"))
    store.append(record(2, 0.7, 12.0))
    table = pq.read_table(tmp_path / TRIALS)
    assert table.schema.equals(COLUMNS.schema(), check_metadata=True)
    columns, frame = read_table(tmp_path, TRIALS)
    assert columns == COLUMNS
    assert frame["trial"].tolist() == [0, 1, 2]
    assert frame["state"].tolist() == ["COMPLETE", "FAIL", "COMPLETE"]
    assert frame["weight.m1"].tolist() == [0.0, 0.25, 0.5]
    assert frame["score.task/acc"].tolist()[0] == 0.5 and frame["score.ppl"].tolist()[2] == 12.0
    assert frame["stderr.task/acc"].tolist()[0] == 0.01
    assert frame["stderr.ppl"].isna().all()
    assert frame.loc[1, "error"] == "boom" and frame.loc[1, "score.task/acc"] != frame.loc[1, "score.task/acc"]
    assert frame.loc[0, "started_at"] == T0
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK, FRONT, TRIALS]  # no temporary files left


def test_front_file_holds_the_non_dominated_complete_trials(tmp_path: Path) -> None:
    store = TrialStore(tmp_path, COLUMNS)
    store.append(record(0, 0.5, 10.0))
    store.append(record(1, 0.4, 11.0))  # dominated by trial 0 (lower acc, higher ppl)
    store.append(record(2, 0.7, 12.0))  # a trade-off against trial 0
    store.append(record(3, None, None, error="boom"))
    _, front = read_table(tmp_path, FRONT)
    assert sorted(front["trial"].tolist()) == [0, 2]
    assert sort_front(front, COLUMNS, "ppl")["trial"].tolist() == [0, 2]
    assert sort_front(front, COLUMNS, None)["trial"].tolist() == [2, 0]


def test_reading_a_missing_run_is_a_config_error(tmp_path: Path) -> None:
    from evaluators.core.errors import ConfigError

    with pytest.raises(ConfigError, match="run directory written by"):
        read_table(tmp_path)


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
    trials = read_table(tmp_path, TRIALS)[1]["trial"].tolist()
    assert sorted(trials) == list(range(60))

    late = TrialStore(tmp_path, COLUMNS)  # opened before another writer adds trial 60
    _append_many(tmp_path, [60])
    with pytest.raises(ValueError, match="trial 60 is already stored"):
        late.append(record(60, 0.1, 1.0))
