"""``mergefront watch``: keep an experiment's front current while checkpoints land.

Each poll reads the experiment and its pool afresh (a ``glob:`` entry picks up new directories)
and compares the members' content fingerprints with the latest run of the experiment:

- no run yet: the first search, under ``RUNS_DIR/NAME``;
- members added or changed: a new generation ``RUNS_DIR/NAME-<k>`` warm-started from the latest,
  so every score still valid is reused (trials that gave weight to a changed or removed member
  are not), with a budget of ``trials_per_member`` per added or changed member;
- otherwise (nothing new, members only moved, renamed or removed): nothing to evaluate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimizer.experiment.config import load_experiment
from optimizer.experiment.fingerprint import member_digests, pool_change
from optimizer.run.directory import generation_name, generations, read_meta
from optimizer.search.driver import Search
from optimizer.search.start import start_run
from optimizer.store.study import JOURNAL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Poll:
    """What one poll found, and the search to run (None: nothing to evaluate)."""

    message: str
    search: Search | None


def poll(
    experiment_file: Path,
    runs_dir: Path,
    trials_per_member: int,
    *,
    allow_pickle: bool = False,
    allow_download: bool = False,
    storage: str = JOURNAL,
    ray_address: str | None = None,
) -> Poll:
    """Compare the pool with the latest run and create the search this calls for, if any."""
    experiment, pool = load_experiment(experiment_file, allow_pickle, allow_download)
    runs = generations(runs_dir, experiment.name)
    start: dict[str, Any] = {"storage": storage, "ray_address": ray_address}
    if not runs:
        search = start_run(experiment, pool, experiment_file, runs_dir, **start)
        return Poll(f"no earlier run of {experiment.name}: searching {len(pool.members)} members", search)
    generation, latest = runs[-1]
    change = pool_change(read_meta(latest).member_fingerprints, member_digests(pool))
    if not change.needs_search:
        return Poll(f"nothing new to evaluate since {latest} ({change.describe()})", None)
    count = len(change.added) + len(change.changed)
    budget = experiment.budget.model_copy(update={"trials": trials_per_member * count})
    name = generation_name(experiment.name, generation + 1)
    experiment = experiment.model_copy(update={"name": name, "budget": budget})
    search = start_run(experiment, pool, experiment_file, runs_dir, warm_from=latest, **start)
    message = f"pool changed since {latest} ({change.describe()}): warm-started {search.run_dir} with {budget.trials} new trials"
    if change.changed:
        message += f"; scores that used {', '.join(change.changed)} (changed files) are not reused"
    return Poll(message, search)
