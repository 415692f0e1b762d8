"""Process environment for mergefront: offline (nothing reaches a model hub) and quiet.

tqdm reads ``TQDM_*`` variables when it is imported, so this is applied before anything
heavy is imported: by the CLI at start-up and by Ray for each worker process. Our own
progress bars pass ``disable=`` explicitly, which overrides the variable.
"""

from __future__ import annotations

import os

OFFLINE_QUIET = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}


def apply_offline_quiet() -> None:
    """Set the defaults above where the user has not set them."""
    for key, value in OFFLINE_QUIET.items():
        os.environ.setdefault(key, value)
