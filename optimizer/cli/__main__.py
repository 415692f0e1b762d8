"""`python -m optimizer.cli` is the `mergefront` command."""

from optimizer.cli import run

run()
