"""Process environment for mergefront: offline (nothing reaches a model hub), quiet and fork-free.

tqdm reads ``TQDM_*`` variables when it is imported, so this is applied before anything
heavy is imported: by the CLI at start-up and by Ray for each worker process. Our own
progress bars pass ``disable=`` explicitly, which overrides the variable.
"""

from __future__ import annotations

import os

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
PROCESS_ENV = {
    **OFFLINE,
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    # lm-eval bootstraps some stderrs in a forked multiprocessing pool; forking inside a
    # threaded Ray actor can deadlock (seen here: a worker hung on its second trial).
    "DISABLE_MULTIPROC": "1",
}


def apply_process_env(offline: bool = True) -> None:
    """Set the defaults above where the user has not set them; ``offline=False`` leaves the hub reachable, for the
    commands that download when asked to (``mergefront tasks fetch``, ``--allow-download``; Ray workers stay
    offline)."""
    for key, value in PROCESS_ENV.items():
        if offline or key not in OFFLINE:
            os.environ.setdefault(key, value)
