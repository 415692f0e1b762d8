"""``python -m toy.replications NAME``: build (or keep, when cached) one replication's toy pool."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from evaluators.core.environment import apply_process_env
from evaluators.core.errors import ConfigError

POOLS = ("recycle", "adapters", "transfer")


def main(argv: list[str] | None = None) -> int:
    """Build the named replication pool; returns the exit code (2 for a ConfigError, e.g. peft missing) rather than raising."""
    parser = argparse.ArgumentParser(prog="python -m toy.replications", description=__doc__)
    parser.add_argument("name", choices=POOLS)
    parser.add_argument("--out", type=Path, help="pool directory (default toy/pools/NAME)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cached build is current")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    apply_process_env()
    out = args.out or Path("toy/pools") / args.name
    try:
        built = importlib.import_module(f"toy.replications.{args.name}").build(out, force=args.force)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.name} pool {'written to' if built else 'is up to date at'} {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
