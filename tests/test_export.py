"""Export and one-off merges: the exported directory is a normal model that lm-eval's own command line
scores exactly as the search did, its tensors equal the resident merge, and bad input is refused."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from evaluators.merge import MergePoint, MergeSpec
from evaluators.merge.resident import MergeSetup
from evaluators.pool import load_pool
from evaluators.scoring.tasks import TaskSpec
from evaluators.worker import Worker, WorkerSpec
from optimizer.cli import main
from optimizer.store.trials import TRIALS, read_trials

pytestmark = pytest.mark.e2e
MEMBERS = ["add", "reverse", "sort", "shift"]


@pytest.fixture
def run(tiny_run: Path) -> Path:
    return tiny_run


def resident_merge(tiny_pool: Path, weights: dict[str, float]) -> dict[str, torch.Tensor]:
    pool = load_pool(tiny_pool / "pool" / "checkpoints.yaml")
    merger, _ = MergeSetup(pool=pool, merge=MergeSpec()).merger(torch.device("cpu"))
    return dict(merger.merged(MergePoint(weights=weights)))


def lm_eval_scores(model_dir: Path, tasks_dir: Path, out: Path) -> dict[str, dict[str, float]]:
    """Scores from lm-eval's own command line, run as a user would, from the tasks' folder (with each example's
    results logged beside them, ``samples_<task>_*.jsonl``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(
        [
            str(Path(sys.executable).with_name("lm_eval")),
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_dir},dtype=float32",
            "--tasks",
            "toy_add,toy_reverse",
            "--include_path",
            str(tasks_dir),
            "--batch_size",
            "32",
            "--device",
            "cpu",
            "--output_path",
            str(out),
            "--log_samples",
        ],
        cwd=tasks_dir,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(next(out.rglob("results_*.json")).read_text())["results"]


def test_exported_trials_are_models_lm_eval_scores_as_the_search_did(
    run: Path, tiny_pool: Path, tmp_path: Path
) -> None:
    trials, front = read_trials(run, TRIALS), read_trials(run)
    merge_trial = next(r.trial for r in trials.records() if r.source.is_sampler)  # weights on several members
    for trial in (front.numbers[0], merge_trial):
        row = trials.find(trial)
        assert row is not None
        out = tmp_path / f"merged{trial}"
        assert main(["export", str(run), "--trial", str(trial), "--out", str(out)]) == 0

        assert {"config.json", "tokenizer.json", "README.md", "mergekit.yaml"} <= {p.name for p in out.iterdir()}
        assert not list(tmp_path.glob(".*partial"))
        weights = {m: row.weights[m] for m in MEMBERS}
        card = (out / "README.md").read_text()
        assert f"trial {trial} of run 'tiny'" in card
        assert ("On the Pareto front" in card) == (trial in front.numbers)
        assert all((f"| {m} | checkpoint | {w:.4f} |" in card) == (w != 0.0) for m, w in weights.items())
        assert all(f"| {row.samples[o]} | " in card for o in row.scores)
        recipe = yaml.safe_load((out / "mergekit.yaml").read_text())
        assert recipe["merge_method"] == "linear" and recipe["parameters"] == {"normalize": False}
        assert (recipe["dtype"], recipe["out_dtype"]) == (
            "float32",
            "float32",
        )  # mergekit computes in float32, as we do
        assert {Path(m["model"]).name: m["parameters"]["weight"] for m in recipe["models"]} == {
            m: w for m, w in weights.items() if w
        }

        model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
        expected = resident_merge(tiny_pool, weights)
        saved = model.state_dict()
        assert set(expected) <= set(saved)
        for key, tensor in expected.items():
            assert torch.equal(saved[key], tensor.to(saved[key].dtype)), key
        assert load_file(out / "model.safetensors").keys() == expected.keys()

        if trial == merge_trial:  # lm-eval's command line on the merge (25 s a run; the front trial's
            # tensors are checked above, and a single checkpoint scores as any model does)
            scored = lm_eval_scores(out, tiny_pool / "tasks", tmp_path / f"lm_eval{trial}")
            assert scored["toy_reverse"]["acc,none"] == row.scores["toy_reverse/acc"]
            assert math.isclose(scored["toy_add"]["perplexity,none"], row.scores["toy_add/perplexity"], rel_tol=1e-9)
            # the per-example results paired comparisons resample are lm-eval's own, in document order
            logged = [
                json.loads(line)
                for line in next((tmp_path / f"lm_eval{trial}").rglob("samples_toy_reverse_*.jsonl")).open()
            ]
            expected_samples = tuple(float(s["acc"]) for s in sorted(logged, key=lambda s: s["doc_id"]))
            spec = WorkerSpec(
                pool=load_pool(tiny_pool / "pool" / "checkpoints.yaml"),
                objectives={"reverse": TaskSpec(task="toy_reverse")},
                tasks_dir=tiny_pool / "tasks",
                bootstrap_iters=0,
            )
            score = Worker(spec).evaluate(MergePoint(weights=weights)).scores["reverse"]
            assert score.per_sample == expected_samples and len(expected_samples) == score.samples


def test_one_off_merge_writes_the_same_outputs(tiny_pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    pool = tiny_pool / "pool" / "checkpoints.yaml"
    assert main(["merge", "--pool", str(pool), "--weights", "add=0.7,sort=0.3", "--out", str(out)]) == 0
    saved = load_file(out / "model.safetensors")
    for key, tensor in resident_merge(tiny_pool, {"add": 0.7, "reverse": 0.0, "sort": 0.3, "shift": 0.0}).items():
        assert torch.equal(saved[key], tensor.to(saved[key].dtype)), key
    assert "`mergefront merge`" in (out / "README.md").read_text()
    assert len(yaml.safe_load((out / "mergekit.yaml").read_text())["models"]) == 2
    # a method mergekit computes differently gets no recipe, and the card says why
    assert (
        main(
            [
                "merge",
                "--pool",
                str(pool),
                "--method",
                "ties",
                "--density",
                "0.4",
                "--weights",
                "add=1,sort=1",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    assert not (tmp_path / "t" / "mergekit.yaml").exists()
    assert "mergekit computes method 'ties' differently" in (tmp_path / "t" / "README.md").read_text()


@pytest.mark.parametrize("method", ["linear", "lora_factorwise"])
def test_adapter_pool_merges_export_as_one_peft_adapter(tmp_path: Path, method: str) -> None:
    import peft

    from tests.helpers import resident_state, two_lora_pool

    base_dir, pool, _ = two_lora_pool(tmp_path)
    out = tmp_path / "adapter"
    assert (
        main(
            [
                "merge",
                "--pool",
                str(pool),
                "--method",
                method,
                "--weights",
                "l1=0.3,l2=0.7",
                "--as-adapter",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == (8 if method == "linear" else 4) and config["lora_alpha"] == config["r"]
    loaded = (
        peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), out)
        .merge_and_unload()
        .state_dict()
    )
    expected = resident_state(pool, MergeSpec(method=method), {"l1": 0.3, "l2": 0.7})
    for key, tensor in expected.items():
        torch.testing.assert_close(loaded[key], tensor, rtol=1e-5, atol=1e-6)
    assert not (out / "mergekit.yaml").exists() and "not written for an adapter" in (out / "README.md").read_text()
