"""`mergefront watch --once` on a pool declared by a glob: a fifth checkpoint landing starts a warm-started
search whose front mixes old trials (not re-evaluated) with new trials that use it; a checkpoint whose
files change is named, and scores that used it are not reused; nothing new means no new run. Real
searches with the dummy backend in this process."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from evaluators.pool import load_pool
from optimizer.cli import main
from optimizer.experiment.fingerprint import member_digests, pool_change
from tests.helpers import SCORES, non_dominated, write_experiment


def trials(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "trials.parquet")


def watch_once(exp: Path, runs: Path, capsys: pytest.CaptureFixture[str], per_member: int = 3) -> str:
    assert (
        main(
            [
                "watch",
                str(exp),
                "--once",
                "--runs-dir",
                str(runs),
                "--trials-per-member",
                str(per_member),
                "--no-progress",
                "--in-process",
            ]
        )
        == 0
    )
    return capsys.readouterr().out.splitlines()[0]


def test_watch_once_follows_the_pool(tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpts = tmp_path / "ckpts"
    for member in ("add", "reverse", "sort", "shift"):
        shutil.copytree(tiny_pool / "pool" / member, ckpts / member)
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text("name: landing\nmembers:\n  - {glob: 'ckpts/*'}\n")
    exp = write_experiment(tmp_path, pool_file, tiny_pool / "tasks", trials=6, backend="dummy")
    runs = tmp_path / "runs"

    assert watch_once(exp, runs, capsys).startswith("no earlier run of tiny: searching 4 members")
    first = trials(runs / "tiny")
    assert (first["state"] == "COMPLETE").sum() == 6

    assert watch_once(exp, runs, capsys).startswith("nothing new to evaluate")
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]

    # a fifth checkpoint lands (the base, as a plain checkpoint)
    shutil.copytree(tiny_pool / "pool" / "base", ckpts / "base")
    line = watch_once(exp, runs, capsys)
    assert "added: base" in line and "tiny-2 with 3 new trials" in line, line
    second = trials(runs / "tiny-2")
    warm = second[second["source"].str.startswith("warm:tiny#")]
    fresh = second[~second["source"].str.startswith("warm:")]
    assert len(warm) == 6 and (fresh["state"] == "COMPLETE").sum() == 3
    old = first.set_index("trial").loc[[int(s.split("#")[1]) for s in warm["source"]]]
    np.testing.assert_array_equal(warm[SCORES].to_numpy(), old[SCORES].to_numpy())  # reused, not re-evaluated
    np.testing.assert_array_equal(warm["eval_seconds"].to_numpy(), old["eval_seconds"].to_numpy())
    assert (warm["weight.base"] == 0).all()
    assert (fresh.loc[fresh["state"] == "COMPLETE", "weight.base"] > 0).any()  # new trials use the new member
    front = pd.read_parquet(runs / "tiny-2" / "front.parquet")
    assert set(front["trial"]) == non_dominated(second)  # one front over old and new trials
    assert front["source"].str.startswith("warm:").any()

    # the add checkpoint is rewritten: named as changed; trials that gave it weight are not reused
    weights = load_file(ckpts / "add" / "model.safetensors")
    save_file(
        {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in weights.items()},
        ckpts / "add" / "model.safetensors",
    )
    line = watch_once(exp, runs, capsys, per_member=2)
    assert "changed: add" in line and "scores that used add (changed files) are not reused" in line, line
    third = trials(runs / "tiny-3")
    carried = third[third["source"].str.startswith("warm:tiny-2#")]
    usable = second[(second["state"] == "COMPLETE") & (second["weight.add"] == 0)]
    assert len(carried) == len(usable) and (carried["weight.add"] == 0).all()
    assert (third[~third["source"].str.startswith("warm:")]["state"] == "COMPLETE").sum() == 2


def test_a_moved_or_renamed_checkpoint_is_recognised_by_content(tiny_pool: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_pool / "pool", tmp_path / "pool")
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text("members:\n  - {name: add, path: pool/add}\n  - {name: sort, path: pool/sort}\n")
    before = member_digests(load_pool(pool_file))
    (tmp_path / "pool" / "add").rename(tmp_path / "moved")
    pool_file.write_text("members:\n  - {name: add, path: moved}\n  - {name: sorting, path: pool/sort}\n")
    change = pool_change(before, member_digests(load_pool(pool_file)))
    assert change.renamed == {"sort": "sorting"} and not (change.added or change.changed or change.removed)
    assert not change.needs_search
