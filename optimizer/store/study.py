"""Where a run's Optuna study lives: the journal file in its directory (default), or a database
shared by several drivers (``--storage postgresql://user@host/db``); and the user attributes its
trials carry (``source``, ``imported_from``, ``fidelity``, ``requeued_from``, ``error``), named and read only here so
that journals written before and after read alike. The attributes a person reads in optuna-dashboard
(``merge_attrs``, ``record_attrs``: real weights, knobs by name, held-out scores) are named here too.

The storage is recorded in ``run.json``, so passwords never go in the URL: PostgreSQL's client
reads them from ``PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, Trial

from evaluators.core.errors import ConfigError
from optimizer.store.journal import journal_storage
from optimizer.store.rows import Fidelity, TrialRecord, TrialRef, TrialSource

JOURNAL = "study.journal"
SCHEMES = ("postgresql", "sqlite", "mysql")


def check_storage_url(url: str) -> str:
    """Refuse, before any work, a URL that is malformed, of an unsupported kind, or holds a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    fix = "e.g. --storage postgresql://USER@HOST:5432/DB"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"--storage '{url}' is not a database URL; {fix}") from None
    if parsed.get_backend_name() not in SCHEMES:
        raise ConfigError(
            f"--storage '{url}': unsupported database '{parsed.get_backend_name()}'; use one of {', '.join(SCHEMES)} ({fix})"
        )
    if parsed.password:
        raise ConfigError(
            "--storage: the URL holds a password, which run.json would record; remove it and set PGPASSWORD or ~/.pgpass"
        )
    return url


def open_storage(run_dir: Path, storage: str) -> BaseStorage:
    """The study storage a run names: ``JOURNAL`` (its journal file) or a database URL."""
    if storage == JOURNAL:
        return journal_storage(run_dir / JOURNAL)
    from sqlalchemy.exc import SQLAlchemyError

    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if storage.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return RDBStorage(storage, engine_kwargs=kwargs)
    except ImportError as exc:
        raise ConfigError(
            f"no database driver for {storage} ({exc}); for PostgreSQL: pip install -e '.[postgres]'"
        ) from None
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"cannot open the study storage {storage} ({first}); check that the server runs and the URL"
        ) from None


def study_exists(storage: BaseStorage, name: str) -> bool:
    """Whether ``storage`` holds a study named ``name`` (lists the storage's studies)."""
    return any(s.study_name == name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False))


# ----- the study's trial attributes: their names, and the values they hold, spelled only here -----

SOURCE, IMPORTED_FROM, FIDELITY, REQUEUED_FROM, ERROR = "source", "imported_from", "fidelity", "requeued_from", "error"


def source_attrs(
    source: TrialSource, requeued_from: int | None = None, imported_from: TrialRef | None = None
) -> dict[str, Any]:
    """The user attributes of a trial queued or added with ``source`` (and, when re-queued, the trial it repeats;
    when imported, the trial it is)."""
    attrs: dict[str, Any] = {SOURCE: str(source)}
    if requeued_from is not None:
        attrs[REQUEUED_FROM] = requeued_from
    if imported_from is not None:
        attrs[IMPORTED_FROM] = str(imported_from)
    return attrs


def trial_source(trial: Trial | FrozenTrial) -> TrialSource:
    """Where a trial's weights came from (its ``source`` attribute; the sampler when it has none)."""
    source = trial.user_attrs.get(SOURCE)
    return TrialSource.sampler() if source is None else TrialSource.parse(str(source))


def trial_imported_from(trial: Trial | FrozenTrial) -> TrialRef | None:
    """The earlier run's trial that an imported trial is (None for one evaluated in this run; a study written before
    ``imported_from`` says it in an old-style ``warm:`` source)."""
    ref = trial.user_attrs.get(IMPORTED_FROM)
    return trial_source(trial).imported_from if ref is None else TrialRef.parse(str(ref))


def trial_fidelity(trial: FrozenTrial) -> Fidelity:
    """The fidelity the driver noted on a complete trial (full when it noted none)."""
    noted = trial.user_attrs.get(FIDELITY)
    return Fidelity.FULL if noted is None else Fidelity.parse(str(noted))


def requeued_from(trial: FrozenTrial) -> int | None:
    """The trial a re-queued trial repeats (None when it repeats none)."""
    number = trial.user_attrs.get(REQUEUED_FROM)
    return None if number is None else int(number)


def note_fidelity(trial: Trial, fidelity: Fidelity) -> None:
    """Note on a trial about to be told complete the fidelity it was scored at."""
    trial.set_user_attr(FIDELITY, str(fidelity))


def note_error(trial: Trial, error: str | None) -> None:
    """Note on a trial about to be told failed why it failed."""
    trial.set_user_attr(ERROR, error)


# ----- what optuna-dashboard shows beside a trial's raw parameters (the sampler's coordinates, not weights) -----

WEIGHT_ATTR, HELD_OUT_ATTR, ON_FRONT = "weight ", "held-out ", "on front"


def merge_attrs(weights: dict[str, float], knobs: dict[str, float]) -> dict[str, Any]:
    """The merge a trial evaluates, as dashboard attributes: each member's real weight (``weight add``) and each merge
    parameter by its name (``lambda``); ``knobs`` is keyed by parameter name."""
    return {**{WEIGHT_ATTR + m: w for m, w in weights.items()}, **knobs}


def note_merge(trial: Trial, weights: dict[str, float], knobs: dict[str, float]) -> None:
    """Note on a trial being evaluated the merge it evaluates (``merge_attrs``; ``knobs`` by stored key), so a live
    dashboard shows weights."""
    from evaluators.merge import parameter_names  # the declarations import torch, which the driver has loaded

    names = parameter_names(knobs)
    for key, value in merge_attrs(weights, {names[k]: v for k, v in knobs.items()}).items():
        trial.set_user_attr(key, value)


def record_attrs(record: TrialRecord, knobs: dict[str, float], on_front: bool) -> dict[str, Any]:
    """Everything the Parquet store knows of a trial that its study does not, as dashboard attributes: the merge,
    source, fidelity, held-out scores and whether it is on the front (``knobs`` keyed by parameter name)."""
    attrs = merge_attrs(record.weights, knobs)
    attrs[SOURCE] = str(record.source)
    if record.imported_from is not None:
        attrs[IMPORTED_FROM] = str(record.imported_from)
    if record.fidelity is not None:
        attrs[FIDELITY] = str(record.fidelity)
    attrs.update({HELD_OUT_ATTR + t: v for t, v in record.held_out.items()})
    attrs[ON_FRONT] = on_front
    return attrs
