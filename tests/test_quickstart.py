"""README's quick starts (issue 17): every fenced block of its "Quick starts" section is marked `run` or
`syntax`; every block is checked without running it (``bash -n``, each ``mergefront`` command line parsed,
each YAML file it writes parsed and each experiment validated by the schema), and the `run` blocks run,
in a fresh directory where the tiny toy pool stands in for the repository's ``toy/``, with a
``mergefront`` on the PATH that is this checkout's. A `run` block marked ``fetches TASK`` downloads that built-in
task's dataset (``mergefront tasks fetch``); with no network here, it runs without its fetch line, before and after a
prepared copy of the dataset is written where the download would leave it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from evaluators.core.config import validate
from optimizer.cli.parser import build_parser
from optimizer.experiment.config import Experiment
from tests.helpers import ARC_ROWS, ARC_SPLITS, cache_hub_dataset, cache_model

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(
    r"<!-- quickstart: (run|syntax)(?:; fetches (\S+))?(?:; downloads ([^;>]+?))?(?:; makes ([^>]*?))? -->"
)
HEREDOC = re.compile(r"^cat > (\S+) <<'EOF'\n(.*?)^EOF$", re.MULTILINE | re.DOTALL)
FETCH = re.compile(r"^mergefront tasks fetch .*\n", re.MULTILINE)
DOWNLOAD = re.compile(r"^hf download (\S+).*\n", re.MULTILINE)
# the built-in tasks whose fetch the test stands in for: cache_hub_dataset's arguments for a prepared copy
PREPARED = {"arc_easy": ("allenai/ai2_arc", "ARC-Easy", ARC_ROWS, ARC_SPLITS)}


@dataclass(frozen=True)
class Block:
    """One fenced block of the section: the heading it is under, its marker's kind (None: unmarked), the built-in
    task whose dataset it fetches, the model repos it downloads, the files its marker says it makes (relative to
    where it runs), its language and its text."""

    title: str
    kind: str | None
    fetches: str | None
    downloads: tuple[str, ...]
    makes: tuple[str, ...]
    language: str
    code: str


def quick_starts(readme: Path = REPO / "README.md") -> list[Block]:
    """The fenced blocks of README's "Quick starts" section, each with the marker on the line before it
    (blank lines between allowed)."""
    section = readme.read_text().split("\n## Quick starts\n", 1)[1].split("\n## ", 1)[0]
    blocks: list[Block] = []
    title, previous, fence = "", "", None
    for line in section.splitlines():
        if fence is not None:
            if line.startswith("```"):
                marker = MARKER.fullmatch(previous)
                kind, fetches, downloads, makes = marker.groups() if marker else (None, None, None, None)
                code = "\n".join(fence[1]) + "\n"
                files = tuple((downloads or "").split()), tuple((makes or "").split())
                blocks.append(Block(title, kind, fetches, *files, fence[0], code))
                fence, previous = None, ""
            else:
                fence[1].append(line)
        elif line.startswith("```"):
            fence = (line[3:].strip(), [])
        elif line.startswith("### "):
            title = line[4:].strip()
        elif line.strip():
            previous = line.strip()
    return blocks


BLOCKS = quick_starts()


def test_every_quick_start_block_is_marked() -> None:
    unmarked = [f"{b.title}: {b.code.splitlines()[0]}" for b in BLOCKS if b.kind is None]
    assert not unmarked, f"blocks without a <!-- quickstart: run|syntax --> line before them: {unmarked}"
    assert all(b.language == "sh" for b in BLOCKS), [(b.title, b.language) for b in BLOCKS]
    run = {b.title for b in BLOCKS if b.kind == "run"}
    assert {"Your own checkpoints", "Your own task", "A built-in lm-eval task"} <= run
    assert {"On a GPU", "On a Ray cluster"} <= {b.title for b in BLOCKS if b.kind == "syntax"}
    assert all(b.makes for b in BLOCKS if b.kind == "run"), "a run block's marker names the files it makes"
    fetching = {b.title: b.fetches for b in BLOCKS if b.kind == "run" and FETCH.search(b.code)}
    assert fetching == {b.title: b.fetches for b in BLOCKS if b.fetches}, "a run block that fetches is marked so"
    assert set(fetching.values()) <= PREPARED.keys(), "the test has no prepared copy of a fetched task's dataset"
    assert "Members by repo id" in run
    for b in BLOCKS:  # a block's download lines are the repos its marker names
        assert tuple(DOWNLOAD.findall(b.code)) == b.downloads, b.title


def _commands(code: str) -> list[list[str]]:
    """The ``mergefront`` command lines of a shell block (continued lines joined), as argument lists."""
    lines = [shlex.split(line, comments=True) for line in code.replace("\\\n", " ").splitlines()]
    return [words[1:] for words in lines if words and words[0] == "mergefront"]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.title)
def test_quick_start_is_valid_shell_with_known_commands_and_experiments(block: Block, tmp_path: Path) -> None:
    checked = subprocess.run(["bash", "-n"], check=False, input=block.code, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    commands = _commands(block.code)
    assert commands, "no mergefront command in the block"
    for argv in commands:
        build_parser().parse_args(argv)  # a ConfigError names the bad option or value
    (tmp_path / "pool.yaml").touch()
    for path, text in HEREDOC.findall(block.code):
        if path.endswith(".yaml"):
            data = yaml.safe_load(text)
            assert isinstance(data, dict), path
            if "objectives" in data:  # an experiment: the schema, with stand-ins for the paths it names
                stand_ins = {"pool": str(tmp_path / "pool.yaml"), "tasks_dir": str(tmp_path)}
                validate(Experiment, {**data, **stand_ins}, f"README, {block.title}: {path}")


def _workspace(tiny_pool: Path, root: Path) -> tuple[Path, dict[str, str]]:
    """A fresh directory laid out like the repository after ``make toy`` (the tiny pool as ``toy/``, its tasks
    as ``experiments/tasks/toy``, the default ``checkpoints.yaml``) and the environment that finds this
    checkout's ``mergefront`` first."""
    work = root / "repo"
    (work / "experiments" / "tasks").mkdir(parents=True)
    (work / "toy").symlink_to(tiny_pool / "pool")
    (work / "experiments" / "tasks" / "toy").symlink_to(tiny_pool / "tasks")
    shutil.copy(REPO / "checkpoints.yaml", work)
    shim = root / "bin" / "mergefront"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m optimizer.cli "$@"\n')
    shim.chmod(0o755)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return work, {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": path}


def _run(code: str, work: Path, env: dict[str, str], expected: int = 0) -> subprocess.CompletedProcess[str]:
    """A block's code as pasted into a shell that stops at the first failure; its exit code must be ``expected``."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        check=False,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == expected, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.e2e
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "run"], ids=lambda b: b.title)
def test_quick_start_runs(block: Block, tiny_pool: Path, tmp_path: Path, hf_cache: Path) -> None:
    """Each run block in its own empty Hugging Face caches (``hf_cache``). A block that fetches runs offline without
    its fetch line: the search stops with exit 2 and the block's own fetch command, and once a prepared copy of the
    dataset lies where the download would leave it, the block runs through; one that downloads model repos runs
    without its `hf download` lines: it stops with exit 2 and the download command, and runs once the toy members lie
    in the hub cache under those ids."""
    work, env = _workspace(tiny_pool, tmp_path)
    if block.fetches is not None:
        [fetch] = FETCH.findall(block.code)
        offline = block.code.replace(fetch, "")
        refused = _run(offline, work, env, expected=2)
        command = " ".join(shlex.split(fetch, comments=True))
        assert refused.stderr.rstrip().endswith(f"on a machine with network: {command}"), refused.stderr[-3000:]
        cache_hub_dataset(hf_cache, *PREPARED[block.fetches])
        done = _run(offline, work, env)
    elif block.downloads:
        offline = DOWNLOAD.sub("", block.code)
        refused = _run(offline, work, env, expected=2)
        assert f"hf download {block.downloads[0]}" in refused.stderr, refused.stderr[-3000:]
        for repo in block.downloads:  # the toy member of the id's name, where `hf download` would leave it
            cache_model(Path(env["HF_HUB_CACHE"]), repo, tiny_pool / "pool" / repo.rsplit("/", 1)[1])
        done = _run(offline, work, env)
    else:
        done = _run(block.code, work, env)
    missing = [f for f in block.makes if not (work / f).is_file() or not (work / f).stat().st_size]
    assert not missing, f"the block did not make {missing}\n{done.stdout[-3000:]}"
