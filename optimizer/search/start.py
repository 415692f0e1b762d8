"""Starting a search: everything that can be checked is checked before the run directory and its study are created,
so bad input leaves nothing behind (``mergefront search``, ``watch``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import optuna

from evaluators.core.errors import ConfigError
from evaluators.pool import Pool
from optimizer.experiment.config import Experiment
from optimizer.experiment.preflight import preflight
from optimizer.run.directory import create_run_dir, read_meta
from optimizer.search.driver import Search
from optimizer.search.workers import check_ray_address
from optimizer.store.study import JOURNAL, check_storage_url, open_storage, study_exists

log = logging.getLogger(__name__)


def start_run(
    experiment: Experiment,
    pool: Pool,
    source: Path,
    runs_dir: Path,
    *,
    overwrite: bool = False,
    warm_from: Path | None = None,
    storage: str = JOURNAL,
    ray_address: str | None = None,
) -> Search:
    """Check everything that can be checked, then create the run directory and its study, so that
    bad input leaves nothing behind."""
    if warm_from is not None:
        read_meta(warm_from)
    preflight(experiment, pool, source)
    check_ray_address(ray_address)
    if storage != JOURNAL:
        shared = open_storage(runs_dir, check_storage_url(storage))
        if study_exists(shared, experiment.name):
            if not overwrite:
                raise ConfigError(
                    f"{storage} already holds a study named '{experiment.name}'; pass --name to start another, "
                    "--overwrite to replace it, or `mergefront join RUN_DIR` to add a driver to its run"
                )
            optuna.delete_study(study_name=experiment.name, storage=shared)
    run_dir = create_run_dir(runs_dir, experiment.name, overwrite)
    log.info("run directory: %s", run_dir)
    try:
        return Search.create(experiment, pool, run_dir, warm_from, storage)
    except ConfigError:
        shutil.rmtree(run_dir)  # a refused warm start leaves nothing half-written
        raise
