"""Bad input through the installed console entry point, as a user runs it: exit code 2 and one line on
stderr from a real process. The catalogue of bad inputs itself is ``tests/test_bad_inputs.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_real_process_exit_code_and_single_line(tmp_path: Path) -> None:
    """The installed console entry point, as a user runs it: exit 2, one line on stderr."""
    bad = tmp_path / "exp.yaml"
    bad.write_text("name: x\ntasks_dir: .\nobjectives: [t]\npool: missing.yaml\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from optimizer.cli import run; run()", "search", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (
            f"mergefront: error: {bad}: pool: file 'missing.yaml' does not exist (resolved to {tmp_path}/missing.yaml); "
            "fix the path, which is relative to the YAML file"
        )
    ]
    assert not (tmp_path / "runs").exists()
