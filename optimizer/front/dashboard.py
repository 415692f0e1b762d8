"""What ``mergefront dashboard`` serves: the run's study, with what only the Parquet store knows made visible.

optuna-dashboard shows a trial's parameters, which for a simplex space are the sampler's coordinates, not merge
weights (trial 5 of the demo: 0.549 and 0.715 where the weights are 0.228 and 0.297), so its importance and
parallel-coordinate views would describe numbers no one merges with. Each trial therefore carries its real
weights and knobs as user attributes (noted live by the driver, ``optimizer.store.study.note_merge``). Held-out
scores are computed after the search, when Optuna no longer lets a finished trial change; so for a finished run
the dashboard is served from an in-memory copy of the study whose trials also carry their source, fidelity,
held-out scores and place on the front (``record_attrs``). A run with trials still running is served live.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, InMemoryStorage
from optuna.trial import TrialState

from optimizer.front.table import parameter_names
from optimizer.run.directory import read_meta
from optimizer.store.study import open_storage, record_attrs
from optimizer.store.trials import FRONT, TRIALS, read_trials


@dataclass(frozen=True)
class DashboardView:
    """The storage to serve and whether it is the live one (trials still running) or a copy made now."""

    storage: BaseStorage
    live: bool
    trials: int


def dashboard_view(run_dir: Path) -> DashboardView:
    """The study of ``run_dir`` for optuna-dashboard (see the module docstring); ConfigError for a directory that is
    not a run."""
    meta = read_meta(run_dir)
    storage = open_storage(run_dir, meta.storage)
    study = optuna.load_study(study_name=meta.study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
        return DashboardView(storage, live=True, trials=len(trials))
    table = read_trials(run_dir, TRIALS)
    front = set(read_trials(run_dir, FRONT).numbers)
    names = parameter_names(table.columns.knobs)
    memory = InMemoryStorage()
    view = optuna.create_study(storage=memory, study_name=study.study_name, directions=study.directions)
    if study.metric_names is not None:
        with warnings.catch_warnings():  # stable in practice since Optuna 3.2; still flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            view.set_metric_names(study.metric_names)
    for trial in trials:
        record = table.find(trial.number)
        shown = copy.deepcopy(trial)
        if record is not None:
            knobs = {names[k]: v for k, v in record.knobs.items()}
            shown.user_attrs = {**trial.user_attrs, **record_attrs(record, knobs, trial.number in front)}
        view.add_trial(shown)
    return DashboardView(memory, live=False, trials=len(trials))
