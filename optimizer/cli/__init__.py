"""The ``mergefront`` command line: ``parser`` defines the commands and their options, ``commands`` does
what each one says, ``main`` turns our errors into one line and an exit code (2 for bad input, 1 for a
failed run, 130 when interrupted).

Imports: this package imports the search side lazily, inside the commands; nothing imports it back.
"""

from __future__ import annotations

import logging
import os
import sys

from evaluators.core.environment import apply_process_env
from evaluators.core.errors import ConfigError, Interrupted, MergefrontError
from optimizer.cli.parser import build_parser

__all__ = ["build_parser", "main", "run"]


def main(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit code (2 for bad input, 1 for a failed run, 130 when interrupted)
    instead of raising."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):  # bare `mergefront`: what it can do, not an error
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
    except ConfigError as exc:
        print(f"mergefront: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # only `tasks fetch` and --allow-download reach the hub
    apply_process_env(offline=not (getattr(args, "downloads", False) or getattr(args, "allow_download", False)))
    # lm-eval's per-call notes and Ray's note on local token authentication would bury our output.
    logging.getLogger("lm_eval").setLevel(logging.INFO if args.verbose else logging.ERROR)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"mergefront: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:  # stopped cleanly: what to run to go on
        print(f"mergefront: {exc}", file=sys.stderr)
        return 130
    except MergefrontError as exc:
        print(f"mergefront: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mergefront: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`mergefront front RUN | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0


def run() -> None:
    """The ``mergefront`` console script: ``main`` on ``sys.argv``, exiting with its code."""
    sys.exit(main())
