"""The transfer replication's own logic on hand-worked cases: its recipe, the diff it fine-tunes from, the
share of the gain recovered, and the steps to reach a score (no training beyond a few tiny steps)."""

from __future__ import annotations

import math

import torch

from experiments.replications.transfer import recovered
from experiments.replications.transfer_steps import Curve, steps_lines, steps_to_reach
from toy.build import ModelShape, new_model
from toy.replications import INIT, POOL_FILE
from toy.replications.transfer import RUNS, STEPS_POOL, TransferRecipe, pools, step_dir, with_diff
from toy.tokenizer import build_tokenizer
from toy.train import CharEncoder, Stage, train_stage


def test_steps_to_reach_is_the_first_saved_step_at_or_above_the_score() -> None:
    scores = {50: 0.97, 0: 0.0, 25: 0.5, 75: 0.96, 100: 0.97}  # any order; dips after reaching do not matter
    assert steps_to_reach(scores, 0.97) == 50
    assert steps_to_reach(scores, 0.0) == 0
    assert steps_to_reach(scores, 0.99) is None


def test_steps_lines_count_against_the_direct_runs_final_score() -> None:
    direct = Curve("direct", {0: 0.0, 25: 0.5, 50: 0.9}, {0: 0.0, 25: 0.4, 50: 0.8})
    transfer = Curve("transfer", {0: 0.7, 25: 0.9, 50: 1.0}, {0: 0.6, 25: 0.7, 50: 0.75})
    lines = steps_lines([direct, transfer], "reverse")
    assert lines[2] == "| 0 | 0.000 | 0.000 | 0.700 | 0.600 |"
    assert lines[-2:] == [
        "| reverse, search split: 0.900 | 50 | 25 |",
        "| reverse, report split: 0.800 | 50 | not reached |",
    ]


def test_recovered_share_and_its_paired_interval() -> None:
    base, direct = [0.0] * 8, [1.0] * 8
    share, low, high = recovered([1.0, 0.0] * 4, base, direct)
    assert share == 0.5 and 0.0 <= low < 0.5 < high <= 1.0
    assert recovered(direct, base, direct) == (1.0, 1.0, 1.0)  # every example recovered, in every resample
    assert all(math.isnan(v) for v in recovered([1.0, 0.0], base[:2], base[:2]))  # no gain at all


def test_recovered_has_no_interval_when_a_resample_has_no_gain() -> None:
    share, low, high = recovered([1.0, 0.0], [0.0, 0.0], [1.0, 0.0], resamples=200)
    assert share == 1.0 and math.isnan(low) and math.isnan(high)


def test_recipe_bases_and_the_fine_tune() -> None:
    recipe = TransferRecipe()
    derived = recipe.derived()
    assert [derived[n].parent for n in ("v1", "v1_ft", "v2", "distant")] == [INIT, "v1", "v1", INIT]
    assert derived["distant"].stages == derived["v1"].stages and derived["distant"].seed == derived["v1"].seed
    assert derived["distant"].init_seed != derived["v1"].init_seed  # the same recipe from another initialisation
    assert recipe.target not in recipe.v1.mixture and recipe.target not in recipe.v2.mixture  # no base knows it
    assert set(recipe.finetune.mixture) == {recipe.target, *recipe.known}  # the fine-tune keeps the other skills
    assert recipe.checkpoint_steps() == list(range(0, recipe.finetune.steps + 1, recipe.every))


def test_checkpoint_steps_end_with_the_run_even_off_the_grid() -> None:
    recipe = TransferRecipe(finetune=Stage({"reverse": 1.0}, steps=110, lr=1e-3), every=25)
    assert recipe.checkpoint_steps() == [0, 25, 50, 75, 100, 110]


def test_pools_name_each_checkpoint_by_run_and_step() -> None:
    recipe = TransferRecipe()
    files = pools(recipe)
    steps = files[STEPS_POOL][1]["members"]
    assert {m["name"].rsplit("_", 1)[0] for m in steps} == set(RUNS)  # what score_curves parses
    assert steps[1] == {"name": "direct_025", "path": "steps/direct/025"}
    main = {m["name"]: m for m in files[POOL_FILE][1]["members"]}
    assert main["v2_ft"]["path"] == step_dir("direct", recipe.finetune.steps)  # the direct run's end
    assert main["distant_plus_diff"]["target_base"] == "distant" and main["v2_plus_diff"]["source_base"] == "v1"


def _tiny(seed: int) -> torch.nn.Module:
    shape = ModelShape(hidden_size=32, intermediate_size=64, layers=1, heads=1, head_dim=32)
    return new_model(shape, build_tokenizer(), seed)


def test_with_diff_adds_the_fine_tunes_difference() -> None:
    target, fine, base = _tiny(0), _tiny(1), _tiny(2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    moved = with_diff(target, fine, base).state_dict()
    f, b = fine.state_dict(), base.state_dict()
    assert all(torch.allclose(moved[k], before[k] + f[k] - b[k]) for k in before)


def test_train_stage_calls_after_step_with_the_steps_taken() -> None:
    tokenizer = build_tokenizer()
    encoder = CharEncoder(tokenizer.get_vocab(), tokenizer.eos_token_id, tokenizer.pad_token_id)
    stage = Stage({"reverse": 1.0}, steps=3, lr=1e-2, batch_size=4)
    seen: list[int] = []
    train_stage(_tiny(0), encoder, stage, 0, set(), after_step=seen.append)
    assert seen == [1, 2, 3]
    seen.clear()
    train_stage(_tiny(0), encoder, stage, 0, set(), until=2, after_step=seen.append)
    assert seen == [1, 2]
