"""One exception root for mergefront, with a few precise children.

Messages name the object and the fix; the CLI prints them as one line and exits 2 for
``ConfigError`` (bad input, detected before any work starts), 130 for ``Interrupted``.
"""


class MergefrontError(Exception):
    """Root of every error mergefront raises on purpose."""


class ConfigError(MergefrontError):
    """Bad user input: a YAML file, a CLI argument or a checkpoint that cannot be used."""


class PoolError(ConfigError):
    """The checkpoint pool is inconsistent or unreadable (missing files, shape mismatch, ...)."""


class EvaluationError(MergefrontError):
    """Scoring one trial failed; the trial is marked failed and the search goes on."""


class Interrupted(MergefrontError):
    """The user stopped a command (Ctrl-C) after what it had done was saved; the message says how to go on. The CLI
    prints it and exits 130, as a shell does for SIGINT."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (its type's name when it has none): a library's multi-line message
    shortened to fit our one-line errors."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
