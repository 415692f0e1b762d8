"""`mergefront watch --once` on a pool declared by a glob: a fifth checkpoint landing starts a warm-started
search that scores it alone first and whose front mixes old trials (not re-evaluated, keeping their source
and identity) with new trials that use it; a checkpoint whose files change is named, scored alone again, and
scores that used it are not reused; nothing new means no new run; the verdict, plot and report count
imported singles as singles. Real searches with the dummy backend in this process."""

from __future__ import annotations

import re
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
from tests.helpers import OBJECTIVES, SCORES, SIGNS, non_dominated, write_experiment


def trials(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "trials.parquet")


def watch_once(exp: Path, runs: Path, capsys: pytest.CaptureFixture[str], per_member: int = 3) -> list[str]:
    """One ``watch --once``; returns what it printed, line by line."""
    argv = ["watch", str(exp), "--once", "--runs-dir", str(runs), "--trials-per-member", str(per_member)]
    assert main([*argv, "--no-progress", "--in-process"]) == 0
    return capsys.readouterr().out.splitlines()


def expected_verdict(run: Path) -> list[str]:
    """The verdict's count line and its dominated-checkpoints line, computed with pandas from the run's Parquet
    files: a single checkpoint is a trial whose source is ``single:<member>``, imported or not; every other complete
    trial is a merge."""
    done, front = trials(run), pd.read_parquet(run / "front.parquet")
    done = done[done["state"] == "COMPLETE"]
    single = done["source"].str.startswith("single:")
    merges = done.loc[~single, SCORES].to_numpy() * SIGNS
    beaten = [
        f"{source.removeprefix('single:')} (trial {trial})"
        for source, trial, row in zip(
            done.loc[single, "source"],
            done.loc[single, "trial"],
            done.loc[single, SCORES].to_numpy() * SIGNS,
            strict=True,
        )
        if any((m >= row).all() and (m > row).any() for m in merges)
    ]
    singles = int(front["source"].str.startswith("single:").sum())
    counts = f"{len(front) - singles} of {len(front)} front points are merges, {singles} single checkpoint"
    return [
        f"verdict: {counts}{'s' * (singles != 1)}",
        f"  single checkpoints a merge dominates: {', '.join(beaten) or 'none'}",
    ]


def verdict(printed: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(printed) if line.startswith("verdict: "))
    block = printed[start : start + len(OBJECTIVES) + 2]
    return [block[0], block[-1]]


def assert_imported_unchanged(imported: pd.DataFrame, runs: Path) -> None:
    """Each imported row is the trial its ``imported_from`` names, in the run that evaluated it: same source, same
    scores and timings (reused, not re-evaluated)."""
    for run, group in imported.groupby(imported["imported_from"].str.rpartition("#")[0]):
        numbers = group["imported_from"].str.rpartition("#")[2].astype(int)
        origin = trials(runs / str(run)).set_index("trial").loc[numbers]
        assert (origin["imported_from"].isna()).all()  # evaluated there, not imported there too
        assert group["source"].tolist() == origin["source"].tolist()
        np.testing.assert_array_equal(group[SCORES].to_numpy(), origin[SCORES].to_numpy())
        np.testing.assert_array_equal(group["eval_seconds"].to_numpy(), origin["eval_seconds"].to_numpy())


def evaluated(run: Path) -> pd.DataFrame:
    """The trials a run evaluated itself, in trial-number order (after every imported one)."""
    table = trials(run)
    fresh = table[table["imported_from"].isna()].sort_values("trial")
    assert fresh["trial"].min() > table.loc[table["imported_from"].notna(), "trial"].max()
    return fresh


def test_watch_once_follows_the_pool(tiny_pool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpts = tmp_path / "ckpts"
    for member in ("add", "reverse", "sort", "shift"):
        shutil.copytree(tiny_pool / "pool" / member, ckpts / member)
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text("name: landing\nmembers:\n  - {glob: 'ckpts/*'}\n")
    exp = write_experiment(tmp_path, pool_file, tiny_pool / "tasks", trials=6, backend="dummy")
    runs = tmp_path / "runs"

    assert watch_once(exp, runs, capsys)[0].startswith("no earlier run of tiny: searching 4 members")
    first = trials(runs / "tiny")
    assert (first["state"] == "COMPLETE").sum() == 6 and first["imported_from"].isna().all()

    assert watch_once(exp, runs, capsys)[0].startswith("nothing new to evaluate")
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]

    # a fifth checkpoint lands (the base, as a plain checkpoint), named to come last in the pool
    shutil.copytree(tiny_pool / "pool" / "base", ckpts / "tuned")
    printed = watch_once(exp, runs, capsys)
    assert "added: tuned" in printed[0] and "tiny-2 with 3 new trials" in printed[0], printed[0]
    second = trials(runs / "tiny-2")
    imported = second[second["imported_from"].notna()]
    assert len(imported) == 6 and imported["imported_from"].str.startswith("tiny#").all()
    assert_imported_unchanged(imported, runs)  # old baselines keep single:<member>, old trials their scores
    assert (imported["weight__tuned"] == 0).all()
    # the new member is scored alone first, then the new pool's uniform average, then the sampler; no old
    # single is evaluated again
    assert evaluated(runs / "tiny-2")["source"].tolist() == ["single:tuned", "uniform", "sampler"]
    assert (second["state"] == "COMPLETE").all()
    front = pd.read_parquet(runs / "tiny-2" / "front.parquet")
    assert set(front["trial"]) == non_dominated(second)  # one front over old and new trials
    # (whether an imported trial is on it depends on the tiny pool's training: not asserted)
    assert verdict(printed) == expected_verdict(runs / "tiny-2")
    assert second["source"].str.startswith("single:").sum() == 5  # each member alone, once
    # the report's plot labels every baseline, imported or not, and its baselines table lists them all
    assert main(["report", str(runs / "tiny-2"), "--out", str(tmp_path / "report.html")]) == 0
    capsys.readouterr()
    page = (tmp_path / "report.html").read_text()
    labels = set(re.findall(r'"([A-Za-z_]+) #\d+"', page))  # the interactive plot's point labels: "add #0"
    assert {"add", "reverse", "sort", "shift", "tuned", "uniform"} <= labels, labels
    table = page[page.index("id='baselines-table'") :].split("</table>")[0]
    baselines = second[second["source"].str.startswith("single:") | (second["source"] == "uniform")]
    assert sorted(re.findall(r"<td class='source'>([^<]*)</td>", table)) == sorted(baselines["source"])
    origins = re.findall(r"<span class='imported'>imported from ([^<]*)</span>", table)
    assert sorted(origins) == sorted(baselines["imported_from"].dropna())
    assert f"{len(second)} complete ({len(imported)} imported from earlier runs)" in page

    # the add checkpoint is rewritten: named as changed; trials that gave it weight are not reused
    weights = load_file(ckpts / "add" / "model.safetensors")
    save_file(
        {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in weights.items()},
        ckpts / "add" / "model.safetensors",
    )
    printed = watch_once(exp, runs, capsys, per_member=2)
    assert "changed: add" in printed[0] and "scores that used add (changed files) are not reused" in printed[0]
    third = trials(runs / "tiny-3")
    carried = third[third["imported_from"].notna()]
    usable = second[second["weight__add"] == 0]
    assert len(carried) == len(usable) and (carried["weight__add"] == 0).all()
    # each keeps the identity of the trial that was evaluated, whichever generation that was
    assert set(carried["imported_from"].str.rpartition("#")[0]) == {"tiny", "tiny-2"}
    assert_imported_unchanged(carried, runs)
    assert evaluated(runs / "tiny-3")["source"].tolist() == ["single:add", "uniform"]
    assert verdict(printed) == expected_verdict(runs / "tiny-3")


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
