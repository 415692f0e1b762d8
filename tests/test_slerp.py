"""SLERP, the method that shows a merge method with a new parameter is one file plus its registration:
checked against the formula written out here (numpy, float64), against mergekit's own slerp tensors,
the worker's in-place merge against the exported one, `t` searched, and a made-up method registered
in one place that validation, the search space and the CLI then all know."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from evaluators.backends.hf import empty_model, live_targets
from evaluators.merge import OPERATORS, MergePoint, MergeSpec, Parameter
from evaluators.merge.base import declared_parameters, operator
from evaluators.merge.parameters import markdown_table
from evaluators.merge.resident import MergeSetup
from evaluators.pool import load_pool
from optimizer.cli import build_parser, main
from optimizer.experiment.fingerprint import check_reusable
from optimizer.space.weights import SpaceSpec, WeightSpace, searchable_parameters
from tests.helpers import tiny_llama
from tests.test_mergekit import MERGEKIT, assert_mergekit_computes
from toy.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "experiments" / "tasks" / "toy"


def llama(directory: Path, seed: int, dtype: torch.dtype) -> Path:
    """``tiny_llama`` in ``dtype``, with a tokenizer."""
    tiny_llama(directory, seed, dtype=dtype)
    build_tokenizer().save_pretrained(directory)
    return directory


def pair(root: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Pool file of two members a, b; in b one tensor is a's negated (antiparallel) and the norms are
    all ones in both (parallel), so both branches of the formula are taken."""
    a, b = llama(root / "a", 0, dtype), llama(root / "b", 1, dtype)
    tensors = load_file(b / "model.safetensors")
    tensors["model.layers.0.self_attn.q_proj.weight"] = -load_file(a / "model.safetensors")[
        "model.layers.0.self_attn.q_proj.weight"
    ]
    save_file(tensors, str(b / "model.safetensors"), metadata={"format": "pt"})
    (root / "pool.yaml").write_text("members:\n  - {name: a, path: a}\n  - {name: b, path: b}\n")
    return root / "pool.yaml"


def reference(t: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SLERP from its definition (Shoemake 1985), with mergekit's conventions: the whole tensor is one
    vector, a norm ≤ 1e-8 counts as 1, and nearly (anti)parallel pairs (|cos θ| > 0.9995) interpolate linearly."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    cos = float(np.clip(np.dot(x / (nx if nx > 1e-8 else 1.0), y / (ny if ny > 1e-8 else 1.0)), -1.0, 1.0))
    if abs(cos) > 0.9995:
        return ((1 - t) * x + t * y).reshape(a.shape)
    theta = np.arccos(cos)
    return ((np.sin((1 - t) * theta) * x + np.sin(t * theta) * y) / np.sin(theta)).reshape(a.shape)


def merged(pool: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    argv = ["merge", "--pool", str(pool), "--method", "slerp", "--weights", "a=1,b=1", "--out", str(out), *extra]
    assert main(argv) == 0
    return load_file(out / "model.safetensors")


def test_slerp_is_the_formula_and_its_ends_are_the_members(tmp_path: Path) -> None:
    pool = pair(tmp_path)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    got = merged(pool, tmp_path / "mid", "--t", "0.3")
    for key, tensor in got.items():
        expected = torch.from_numpy(reference(0.3, a[key].numpy(), b[key].numpy())).float()
        torch.testing.assert_close(tensor, expected, rtol=2e-6, atol=1e-7, msg=key)
    q = "model.layers.0.self_attn.q_proj.weight"  # antiparallel: linear, (1 - 0.3)·a − 0.3·a
    torch.testing.assert_close(got[q], 0.4 * a[q], rtol=1e-6, atol=1e-7)
    for t, member in (("0", a), ("1", b)):
        ends = merged(pool, tmp_path / f"t{t}", "--t", t)
        assert all(torch.equal(ends[k], member[k]) for k in member), t


def test_the_worker_merges_what_merge_writes_bit_for_bit(tmp_path: Path) -> None:
    pool = pair(tmp_path, torch.bfloat16)
    written = merged(pool, tmp_path / "out", "--t", "0.7")
    source = MergeSetup(pool=load_pool(pool), merge=MergeSpec(method="slerp"))
    plan = source.plan()
    live = empty_model(source, plan, plan.model_dtype(), torch.device("cpu"))
    merger, _ = source.merger(torch.device("cpu"), plan)
    targets = live_targets(live, plan)
    merger.merge_into(MergePoint({"a": 1.0, "b": 1.0}, knobs={"t": 0.7}), targets)  # t as a search sets it
    state = live.state_dict()
    for key, tensor in written.items():
        assert torch.equal(state[key], tensor), key


@pytest.mark.skipif(
    not MERGEKIT.is_file() and "MERGEKIT_VENV" not in os.environ,
    reason="no mergekit environment (`make test-mergekit` builds .venv-mergekit; or set MERGEKIT_VENV)",
)
def test_mergekit_runs_the_slerp_recipe_and_computes_our_tensors(tmp_path: Path) -> None:
    pool = pair(tmp_path, torch.bfloat16)
    ours = merged(pool, tmp_path / "ours", "--t", "0.35")
    recipe = yaml.safe_load((tmp_path / "ours" / "mergekit.yaml").read_text())
    assert recipe["merge_method"] == "slerp" and recipe["parameters"] == {"t": 0.35}
    assert recipe["base_model"] == "./a" and [m["model"] for m in recipe["models"]] == ["./a", "./b"]
    assert_mergekit_computes(tmp_path / "ours", ours, tmp_path)


def test_a_search_varies_t(tmp_path: Path) -> None:
    pool = pair(tmp_path)
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(
        f"name: slerp\npool: {pool}\ntasks_dir: {TASKS}\n"
        "objectives:\n  - {task: toy_add, metric: perplexity, direction: minimize, limit: 4}\n  - {task: toy_sort, limit: 4}\n"
        "merge: {method: slerp}\nspace: {knobs: {t: [0.0, 1.0]}}\n"
        "budget: {trials: 4}\nsampler: {name: random}\nevaluation: {bootstrap_iters: 0}\n"
        "workers: {count: 1, threads: 1, batch_size: 4}\n"
    )
    assert main(["search", str(experiment), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--in-process"]) == 0
    trials = pd.read_parquet(tmp_path / "runs" / "slerp" / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 4
    assert trials["knob__t"].between(0.0, 1.0).all() and trials["knob__t"].nunique() >= 2


def test_a_new_method_and_its_parameter_are_one_registration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A made-up method: scale the soup by γ in [1, 4]. Declared once, below; nothing else is edited."""
    monkeypatch.setattr(OPERATORS, "_items", dict(OPERATORS._items))  # registered for this test only
    gamma = Parameter("gamma", 2.0, "how much the soup is amplified", low=1.0, high=4.0)

    @operator("amplified", parameters=(gamma,))
    def amplified(x, w, spec):  # type: ignore[no-untyped-def]
        return x.combination(w * spec.value(gamma))

    assert MergeSpec(method="amplified", gamma=3).value(gamma) == 3.0
    with pytest.raises(ValueError, match=r"parameter 'gamma' = 5 lies outside \[1, 4\]"):
        MergeSpec(method="amplified", gamma=5)
    assert "gamma" in searchable_parameters() and SpaceSpec(knobs={"gamma": (1.0, 3.0)}).knobs == {"gamma": (1.0, 3.0)}
    merge_help = build_parser()._subparsers._group_actions[0].choices["merge"].format_help()  # type: ignore[union-attr]
    assert "--gamma GAMMA" in merge_help and "how much the soup is amplified" in merge_help
    pool = pair(tmp_path)
    out = tmp_path / "out"
    argv = [
        "merge",
        "--pool",
        str(pool),
        "--method",
        "amplified",
        "--weights",
        "a=0.5",
        "--gamma",
        "3",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    a = load_file(tmp_path / "a" / "model.safetensors")
    got = load_file(out / "model.safetensors")
    assert all(torch.equal(got[k], a[k] * 1.5) for k in a)


def test_the_readme_table_is_the_declarations() -> None:
    assert markdown_table(declared_parameters().values()) in (ROOT / "README.md").read_text()


def test_runs_written_before_parameters_were_declared_still_load() -> None:
    """run.json used to hold every method's parameters, unset ones as null, under the name `scale`;
    searched values stay `k.scale` / `knob.scale`, so old studies and Parquet files read as before."""
    old = {"method": "task_arithmetic", "scale": 0.7, "density": None, "drop": None, "seed": None}
    spec = MergeSpec.model_validate(old)
    assert spec.value("scale") == 0.7 and spec.model_dump() == {"method": "task_arithmetic", "scale": 0.7}
    assert MergeSpec.model_validate({**old, "scale": None}).model_dump() == {"method": "task_arithmetic", "scale": None}
    fingerprint = {"evaluation": {}, "seed": 0, "space": {}, "objectives": {}, "members": {"a": "x"}}
    check_reusable(
        {**fingerprint, "merge": {**old, "merge_base": "d"}},
        {**fingerprint, "merge": {**spec.model_dump(), "merge_base": "d"}},
        Path("old"),
    )
    space = WeightSpace(SpaceSpec(knobs={"lambda": (0.5, 1.5)}), ["a", "b"], knob_defaults={"scale": 1.0})
    assert "k.scale" in space.distributions() and SpaceSpec(knobs={"scale": (0.5, 1.5)}) == space.spec
