"""mergekit recipes: written only where mergekit can run them and compute our tensors (issue 15 items 5
and 9), and, where a mergekit environment exists (`make test-mergekit` builds one), run by mergekit
itself and compared with our merge tensor by tensor. `mergefront merge` normalizes the weights as
mergekit's methods do by default (issue 17): against mergekit's formulas, and against mergekit itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from evaluators.merge import MergeSpec
from evaluators.merge.engine import plan_for
from evaluators.pool import load_pool
from optimizer.export.mergekit import mergekit_recipe
from tests.helpers import tiny_llama

MERGEKIT = (  # absolute: mergekit runs in the pool file's folder, and `make test-mergekit` gives a relative path
    Path(os.environ.get("MERGEKIT_VENV", Path(__file__).resolve().parents[1] / ".venv-mergekit")).absolute()
    / "bin"
    / "mergekit-yaml"
)


def recipe(pool_file: Path, method: str, weights: dict[str, float]) -> tuple[dict | None, str]:
    spec = MergeSpec(method=method)
    out = pool_file.parent / "out"
    text, note = mergekit_recipe(plan_for(load_pool(pool_file), spec), spec, weights, {}, grouped=False, out=out)
    return (yaml.safe_load(text) if text else None), note


def assert_mergekit_computes(ours: Path, tensors: dict[str, torch.Tensor], pool_folder: Path) -> None:
    """mergekit, run on ``ours``/mergekit.yaml from the pool file's folder (the recipe names the members as that file
    does, relative to it, and says so), writes ``tensors`` within bf16 rounding of a float32 sum."""
    text = (ours / "mergekit.yaml").read_text()
    assert str(pool_folder) not in text  # no absolute path of this machine
    assert f"relative to its folder, {os.path.relpath(pool_folder, ours)} from this" in text.replace("\n# ", " ")
    mergekit_writes(ours / "mergekit.yaml", tensors, pool_folder)


def mergekit_writes(recipe: Path, tensors: dict[str, torch.Tensor], cwd: Path) -> None:
    """mergekit run on ``recipe`` in ``cwd`` writes ``tensors`` within bf16 rounding of a float32 sum."""
    theirs = recipe.parent / "theirs"
    subprocess.run([str(MERGEKIT), str(recipe), str(theirs)], check=True, capture_output=True, timeout=600, cwd=cwd)
    other = {k: v for p in theirs.glob("*.safetensors") for k, v in load_file(p).items()}
    assert set(tensors) == set(other)
    for key, tensor in tensors.items():
        assert tensor.dtype == other[key].dtype == torch.bfloat16
        differ = (tensor.float() - other[key].float()).abs()
        step = torch.maximum(tensor.float().abs(), other[key].float().abs()) * 2**-7  # one bf16 step (8 bits)
        assert (differ <= step).all(), key  # equal within bf16 rounding of a float32 sum


def test_one_checkpoint_under_two_names_is_one_input_with_the_summed_weight(tmp_path: Path) -> None:
    tiny_llama(tmp_path / "a", 0, dtype=torch.bfloat16)
    tiny_llama(tmp_path / "b", 1, dtype=torch.bfloat16)
    pool = tmp_path / "pool.yaml"
    pool.write_text("members:\n  - {name: a, path: a}\n  - {name: a2, path: a}\n  - {name: b, path: b}\n")
    written, _ = recipe(pool, "linear", {"a": 0.25, "a2": 0.25, "b": 0.5})
    assert written is not None
    assert {m["model"]: m["parameters"]["weight"] for m in written["models"]} == {"./a": 0.5, "./b": 0.5}
    assert (written["dtype"], written["out_dtype"]) == ("float32", "bfloat16")


def test_the_base_as_a_member_adds_nothing_to_task_arithmetic(tmp_path: Path) -> None:
    tiny_llama(tmp_path / "base", 0, dtype=torch.bfloat16)
    tiny_llama(tmp_path / "ft", 1, dtype=torch.bfloat16)
    pool = tmp_path / "pool.yaml"
    pool.write_text(
        "bases: {b: {path: base}}\nmembers:\n  - {name: b, kind: base, base: b}\n  - {name: ft, kind: finetune, path: ft, base: b}\n"
    )
    written, _ = recipe(pool, "task_arithmetic", {"b": 0.5, "ft": 0.8})
    assert written is not None and written["base_model"] == "./base"
    assert [m["model"] for m in written["models"]] == ["./ft"]


def test_padded_vocabularies_and_mixed_dtypes_get_no_recipe_and_say_why(tmp_path: Path) -> None:
    tiny_llama(tmp_path / "a", 0, dtype=torch.bfloat16)
    tiny_llama(tmp_path / "b", 1, vocab=42, dtype=torch.bfloat16)
    head = tiny_llama(
        tmp_path / "c", 2, dtype=torch.bfloat16
    )  # bf16 except a float32 head, as some checkpoints keep it
    tensors = {k: (v.float() if k == "lm_head.weight" else v) for k, v in load_file(head / "model.safetensors").items()}
    save_file(tensors, str(head / "model.safetensors"), metadata={"format": "pt"})
    pool = tmp_path / "pool.yaml"
    pool.write_text("members:\n  - {name: a, path: a}\n  - {name: b, path: b}\n")
    written, note = recipe(pool, "linear", {"a": 0.5, "b": 0.5})
    assert written is None and "vocabularies differ (40, 42 rows)" in note
    pool.write_text("members:\n  - {name: c, path: c}\n  - {name: a, path: a}\n")
    written, note = recipe(pool, "linear", {"a": 0.5, "c": 0.5})
    assert written is None and "several dtypes (bfloat16, float32)" in note


def finetune_pool(directory: Path, dtype: torch.dtype, members: str = "x, y") -> Path:
    """Three random tiny Llamas, a base and fine-tunes x and y of it, in a pool of finetune members (``members``
    names them, each followed by the directory it is: x2 is x again)."""
    for seed, name in enumerate(("base", "x", "y")):
        tiny_llama(directory / name, seed, dtype=dtype)
    pool = directory / "pool.yaml"
    lines = [f"  - {{name: {m}, kind: finetune, path: {m[0]}, base: b}}" for m in members.split(", ")]
    pool.write_text("bases: {b: {path: base}}\nmembers:\n" + "\n".join(lines) + "\n")
    return pool


# mergekit's formulas (mergekit/merge_methods/linear.py, generalized_task_arithmetic.py) for weights x=1, y=3:
# linear divides Σ w θ by Σ w unless `normalize: false`; task_arithmetic adds Σ w τ unless `normalize: true`
FORMULAS = {
    ("linear",): (
        (lambda t: (t["x"] + 3 * t["y"]) / 4),
        "weights used: x=0.25 y=0.75 (x=1 y=3 divided by their sum, 4;",
    ),
    ("linear", "--no-normalize"): ((lambda t: t["x"] + 3 * t["y"]), "weights used: x=1 y=3 (as given: --no-normalize)"),
    ("task_arithmetic",): (
        (lambda t: t["base"] + (t["x"] - t["base"]) + 3 * (t["y"] - t["base"])),
        "weights used: x=1 y=3 (as given, as mergekit's task_arithmetic does by default;",
    ),
    ("task_arithmetic", "--normalize"): (
        (lambda t: t["base"] + ((t["x"] - t["base"]) + 3 * (t["y"] - t["base"])) / 4),
        "weights used: x=0.25 y=0.75 (x=1 y=3 divided by their sum, 4;",
    ),
}


@pytest.mark.parametrize("case", sorted(FORMULAS), ids=" ".join)
def test_merge_normalizes_the_weights_as_mergekit_does(
    tmp_path: Path, case: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    from optimizer.cli import main

    method, *flags = case
    formula, printed = FORMULAS[case]
    pool = finetune_pool(tmp_path, torch.float32)
    out = tmp_path / "out"
    assert (
        main(["merge", "--pool", str(pool), "--method", method, "--weights", "x=1,y=3", *flags, "--out", str(out)]) == 0
    )
    assert capsys.readouterr().out.startswith(printed)
    models = {name: load_file(tmp_path / name / "model.safetensors") for name in ("base", "x", "y")}
    for key, tensor in load_file(out / "model.safetensors").items():
        expected = formula({name: state[key].double() for name, state in models.items()})
        torch.testing.assert_close(tensor.double(), expected, rtol=1e-5, atol=1e-6, msg=key)


# `make test-mergekit` sets MERGEKIT_VENV: there a missing mergekit fails instead of skipping
needs_mergekit = pytest.mark.skipif(
    not MERGEKIT.is_file() and "MERGEKIT_VENV" not in os.environ,
    reason="no mergekit environment (`make test-mergekit` builds .venv-mergekit)",
)


@needs_mergekit
@pytest.mark.parametrize("method", ["linear", "task_arithmetic"])
def test_mergekit_runs_the_recipe_and_computes_our_tensors(tmp_path: Path, method: str) -> None:
    from optimizer.cli import main

    pool = finetune_pool(tmp_path, torch.bfloat16, members="x, x2, y")
    ours = tmp_path / "ours"
    assert (
        main(["merge", "--pool", str(pool), "--method", method, "--weights", "x=0.2,x2=0.3,y=0.5", "--out", str(ours)])
        == 0
    )
    assert_mergekit_computes(ours, load_file(ours / "model.safetensors"), tmp_path)


@needs_mergekit
@pytest.mark.parametrize(("method", "flags"), [("linear", []), ("task_arithmetic", ["--normalize"])])
def test_mergekit_normalizing_computes_our_merge_of_the_same_weights(
    tmp_path: Path, method: str, flags: list[str]
) -> None:
    """A recipe of mergekit's own with weights 1 and 3: `normalize` left at linear's default (true), asked for in
    task_arithmetic; our merge of the same weights, normalized by default or by --normalize, is its merge."""
    from optimizer.cli import main

    pool = finetune_pool(tmp_path, torch.bfloat16)
    ours = tmp_path / "ours"
    argv = ["merge", "--pool", str(pool), "--method", method, "--weights", "x=1,y=3", *flags, "--out", str(ours)]
    assert main(argv) == 0
    recipe: dict[str, object] = {
        "merge_method": method,
        "models": [{"model": str(tmp_path / m), "parameters": {"weight": w}} for m, w in (("x", 1.0), ("y", 3.0))],
        "dtype": "float32",
        "out_dtype": "bfloat16",
    }
    if method == "task_arithmetic":
        recipe.update(base_model=str(tmp_path / "base"), parameters={"normalize": True})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    mergekit_writes(tmp_path / "recipe.yaml", load_file(ours / "model.safetensors"), tmp_path)
