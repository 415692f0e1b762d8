"""The replications' own logic, on hand-worked cases: greedy soup, results tables, build cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from evaluators.core.errors import ConfigError
from experiments.replications.common import Row, greedy_soup, scores_table, uniform, weights_table
from toy.build import held_out_prompts, write_tasks
from toy.replications import Trainer, cached_build
from toy.skills import SKILLS


def test_greedy_soup_ranks_alone_and_keeps_what_does_not_hurt() -> None:
    alone = {"a": 0.5, "b": 0.7, "c": 0.6, "d": 0.6}
    soups = {("b", "c"): 0.72, ("b", "c", "d"): 0.71, ("a", "b", "c"): 0.72}  # soup of b, c, then d, then a
    calls: list[tuple[str, ...]] = []

    def held_in(weights: dict[str, float]) -> float:
        key = tuple(sorted(weights))
        assert all(w == pytest.approx(1 / len(key)) for w in weights.values())  # always a uniform soup
        calls.append(key)
        return soups[key]

    weights, trace = greedy_soup(alone, held_in)
    # ranked b (0.7), c (0.6, before d on the tie), d, a; c kept (0.72 >= 0.7), d skipped (0.71 < 0.72),
    # a kept on the tie (0.72 >= 0.72)
    assert calls == [("b", "c"), ("b", "c", "d"), ("a", "b", "c")]
    assert weights == {"b": pytest.approx(1 / 3), "c": pytest.approx(1 / 3), "a": pytest.approx(1 / 3)}
    assert [line.split(":")[0] for line in trace] == ["start with b (0.700)", "add c", "skip d", "add a"]


def test_greedy_soup_of_one_member_is_that_member() -> None:
    assert greedy_soup({"only": 0.3}, lambda w: 1.0) == ({"only": 1.0}, ["start with only (0.300)"])


def _rows() -> list[Row]:
    return [
        Row("x", {"m": 1.0, "n": 0.0}, {"add": 0.5, "sort": 0.25}, {"add": 0.25, "sort": 0.25}),
        Row("y", {"m": 0.995, "n": 0.005}, {"add": 0.25, "sort": 0.75}, {"add": 0.5, "sort": 0.0}, {"scale": 1.5}),
    ]


def test_row_macros_and_members_used() -> None:
    x, y = _rows()
    assert (x.search_macro, x.held_out_macro, x.used) == (0.375, 0.25, 1)
    assert (y.search_macro, y.held_out_macro, y.used) == (0.5, 0.25, 1)  # 0.005 is below the 0.01 threshold


def test_scores_table_bolds_the_best_of_each_column() -> None:
    lines = scores_table(_rows()).splitlines()
    assert lines[0] == "| merge | members > 0.01 | add | sort | macro | add (report) | sort (report) | macro (report) |"
    assert lines[2] == "| x | 1 | **0.500** | 0.250 | 0.375 | 0.250 | **0.250** | **0.250** |"
    assert lines[3] == "| y | 1 | 0.250 | **0.750** | **0.500** | **0.500** | 0.000 | **0.250** |"


def test_weights_table_blanks_small_weights_and_shows_knobs() -> None:
    lines = weights_table(_rows()).splitlines()
    assert lines[0] == "| merge | m | n | scale |"
    assert lines[2:] == ["| x | 1.00 |  |  |", "| y | 0.99 |  | 1.50 |"]


def test_uniform_weights() -> None:
    assert uniform(["a", "b", "c", "d"]) == {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}


def test_held_out_prompts_are_what_write_tasks_writes(tmp_path: Path) -> None:
    assert held_out_prompts(3, 5) == write_tasks(tmp_path, 3, 5)
    assert len(held_out_prompts(3, 5)) == len(SKILLS) * 2 * 5 == 80  # 8 skills, 2 splits


@dataclass(frozen=True)
class Recipe:
    steps: int


def test_cached_build_reuses_a_build_of_the_same_recipe(tmp_path: Path) -> None:
    out = tmp_path / "out"
    builds: list[str] = []

    def build(trainer: Trainer) -> None:
        assert trainer.out_dir == out and not (out / "manifest.json").exists()  # written last
        builds.append("built")

    assert cached_build(out, Recipe(1), build)
    assert not cached_build(out, Recipe(1), build)  # cached
    assert cached_build(out, Recipe(2), build)  # another recipe
    assert cached_build(out, Recipe(2), build, force=True)
    assert len(builds) == 3


def test_ranked_trials_orders_complete_full_trials_by_signed_macro(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from experiments.replications.common import ranked_trials
    from optimizer.store.columns import Columns
    from optimizer.store.rows import Fidelity, TrialRecord, TrialSource, TrialState
    from optimizer.store.trials import TrialStore

    columns = Columns(
        weights=("a", "b"), objectives=("acc", "loss"), directions=("maximize", "minimize"), knobs=("scale",)
    )
    now = datetime.now(UTC)
    store = TrialStore(tmp_path, columns)

    def add(trial: int, acc: float, loss: float, **extra: object) -> None:
        fields = {
            "weights": {"a": 0.5, "b": 0.5},
            "scores": {"acc": acc, "loss": loss},
            "stderr": {},
            "knobs": {"scale": 1.0},
        }
        store.append(
            TrialRecord(
                trial,
                TrialState.COMPLETE,
                TrialSource.sampler(),
                **fields,
                merge_seconds=0.0,
                eval_seconds=0.0,
                worker="w",
                device="cpu",
                started_at=now,
                finished_at=now,
                **extra,
            )
        )  # type: ignore[arg-type]

    add(0, 0.5, 0.25)  # macro (0.5 - 0.25) / 2 = 0.125
    add(1, 0.5, 0.0)  # 0.25
    add(2, 0.9, 0.0, fidelity=Fidelity(10))  # screened only: left out
    add(3, 0.75, 0.25)  # 0.25, a tie with trial 1: the lower number first
    store.append(
        TrialRecord.failure("boom", trial=4, source=TrialSource.sampler(), weights={}, started_at=now, finished_at=now)
    )
    ranked = ranked_trials(tmp_path)
    assert [(t.number, t.macro) for t in ranked] == [(1, 0.25), (3, 0.25), (0, 0.125)]
    assert ranked[0].weights == {"a": 0.5, "b": 0.5} and ranked[0].knobs == {"scale": 1.0}


def test_train_stage_until_stops_the_same_schedule_early() -> None:
    import torch

    from toy.build import ModelShape, new_model
    from toy.tokenizer import build_tokenizer
    from toy.train import CharEncoder, Stage, train_stage

    tokenizer = build_tokenizer()
    encoder = CharEncoder(tokenizer.get_vocab(), tokenizer.eos_token_id, tokenizer.pad_token_id)
    shape = ModelShape(hidden_size=32, intermediate_size=64, layers=1, heads=1, head_dim=32)
    stage = Stage({"add": 1.0}, steps=3, lr=1e-2, batch_size=4)

    def trained(until: int | None) -> dict[str, torch.Tensor]:
        model = new_model(shape, tokenizer, seed=0)
        train_stage(model, encoder, stage, seed=0, exclude=set(), until=until)
        return model.state_dict()

    untouched, full = new_model(shape, tokenizer, seed=0).state_dict(), trained(None)
    assert all(torch.equal(untouched[k], v) for k, v in trained(0).items())  # no step taken
    assert all(torch.equal(full[k], v) for k, v in trained(3).items())  # until = steps is the full stage
    assert all(torch.equal(full[k], v) for k, v in trained(10).items())  # never past the stage
    assert not all(torch.equal(full[k], v) for k, v in trained(2).items())


def test_readme_blocks_are_replaced_whole_and_a_missing_block_is_named() -> None:
    from experiments.replications.readme import fill

    text = "intro\n<!-- generated: demo -->\nold\nlines\n<!-- end: demo -->\nafter\n"
    assert fill(text, "demo", "new") == "intro\n<!-- generated: demo -->\nnew\n<!-- end: demo -->\nafter\n"
    assert fill("<!-- generated: demo -->\n<!-- end: demo -->", "demo", "a\nb") == (
        "<!-- generated: demo -->\na\nb\n<!-- end: demo -->"
    )  # an empty block too
    with pytest.raises(ConfigError, match="README.md has no block 'recycle'"):
        fill(text, "recycle", "x")


def test_the_readme_has_every_generated_block() -> None:
    from experiments.replications.readme import REPLICATIONS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in ("toy-scores", "demo", *REPLICATIONS):
        assert f"<!-- generated: {name} -->\n" in readme and f"\n<!-- end: {name} -->" in readme, name


def test_the_demo_block_reports_the_run_as_stored(dummy_run: Path) -> None:
    from experiments.replications.readme import demo_block
    from optimizer.store.trials import FRONT, TRIALS, read_trials

    text = demo_block(dummy_run)
    trials, front = read_trials(dummy_run, TRIALS), read_trials(dummy_run, FRONT)
    assert f": {len(trials)} trials, 0 failed, in " in text and f"The front has {len(front)} points" in text
    assert "verdict: " in text and "CPUs, torch " in text


def test_a_replication_block_is_its_results_without_title_one_level_down(tmp_path: Path) -> None:
    from experiments.replications.readme import replication_block

    (tmp_path / "results.md").write_text("# Title\n\nintro\n\n## Comparisons\n\n| a |\n")
    text = replication_block(tmp_path)
    assert text.startswith("intro\n\n#### Comparisons\n\n| a |\n\nWritten on ") and "CPUs, torch " in text


def test_recycle_tilt_fixes_the_shares_and_scales_the_rest() -> None:
    from toy.replications.recycle import MIXTURE, tilt

    mix = tilt({"add": 0.5})
    assert list(mix) == list(MIXTURE) and mix["add"] == 0.5 and sum(mix.values()) == pytest.approx(1.0)
    assert mix["sub"] / mix["sort"] == pytest.approx(MIXTURE["sub"] / MIXTURE["sort"])  # the rest keeps its proportions
    assert tilt({}) == pytest.approx({s: w / sum(MIXTURE.values()) for s, w in MIXTURE.items()})


def test_recycle_recipe_checkpoints_every_run_mid_schedule() -> None:
    from toy.replications.recycle import SKILLS, RecycleRecipe

    members = RecycleRecipe().members
    assert len(members) >= 8 and len({m.seed for m in members.values()}) == len(members)
    for spec in members.values():
        assert spec.parent == "base" and spec.until is not None and spec.until < spec.stages[-1].steps
        assert all(set(stage.mixture) == set(SKILLS) for stage in spec.stages)
    assert len({stage.lr for m in members.values() for stage in m.stages}) > 1


def test_recycle_experiments_score_the_pool_skills_in_order() -> None:
    import yaml

    from toy.replications.recycle import SKILLS

    root = Path(__file__).resolve().parents[1] / "experiments"
    for name in ("recycle.yaml", "recycle-cmaes.yaml"):
        experiment = yaml.safe_load((root / name).read_text())
        assert [o["task"] for o in experiment["objectives"]] == [f"toy_{s}" for s in SKILLS]
        assert [o["task"] for o in experiment["held_out"]] == [f"toy_{s}_report" for s in SKILLS]


def test_recycle_verdict_reads_each_comparison_interval() -> None:
    from experiments.replications.recycle import _verdict

    def row(name: str, weights: dict[str, float], right: int) -> Row:
        return Row(
            name, weights, {"a": 0.0}, {"a": right / 40}, held_out_samples={"a": (1.0,) * right + (0.0,) * (40 - right)}
        )

    merge = row("merge", {"m": 0.5, "n": 0.46, "o": 0.04}, 30)
    line = _verdict(merge, [row("worse", {"m": 1.0}, 5), row("same", {"n": 1.0}, 30)])
    assert (
        line
        == "- merge (2 of 3 checkpoints above 0.05) beats 1 of 2 baselines on the held-out macro-average; it ties same"
    )
