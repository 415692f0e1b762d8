"""The replications (``make recycle``, ``make adapters``, ``make transfer``): the three papers'
findings rerun on toy pools. ``common`` holds what they share; each module's ``main`` scores the
baselines and the searched merges on both splits and writes ``results.md`` and ``results.png``
into the run directory.

Imports: ``optimizer`` (experiment, store, front) and ``evaluators`` (the worker that re-scores), as a user's
script would; nothing in the product imports these."""

from evaluators.core.environment import apply_process_env

apply_process_env()  # before lm-eval and tqdm are imported: offline, no progress bars (as the CLI does)
