"""Bad input: each problem is one line naming the input and the fix, exit code 2, nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from optimizer.cli import main
from tests.conftest import write_experiment


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def search_error(pool_copy: Path, pool_yaml: str, capsys: pytest.CaptureFixture[str], extra: str = "") -> str:
    pool_file = pool_copy / "pool" / "bad.yaml"
    pool_file.write_text(pool_yaml)
    exp = write_experiment(pool_copy, pool_file, pool_copy / "tasks", extra)
    runs = pool_copy / "runs"
    code, err = run_cli(["search", str(exp), "--runs-dir", str(runs), "--no-progress"], capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert not runs.exists(), "a failed validation must leave no run directory behind"
    return err


MEMBERS = "members:\n  - {name: add, path: add}\n  - {name: reverse, path: reverse}\n"


@pytest.mark.parametrize(
    ("pool_yaml", "expected"),
    [
        ("members:\n  - {name: add, path: nowhere}\n", r"members\[0\]\.path: directory 'nowhere' does not exist"),
        ("members:\n  - {name: add, kind: adapter, path: add}\n", r"members\[0\]: unknown member kind; use one of: checkpoint"),
        ("members: []\n", "the pool has no members"),
        ("members:\n  - {name: add, path: add}\n  - {name: add, path: sort}\n", "member name 'add' is used twice"),
        ("members:\n  - {name: add, pth: add}\n", r"unknown key 'pth' \(did you mean 'path'\?\)"),
        ("members:\n  - {name: x, kind: finetune, path: add, base: b1}\n", "refers to base 'b1', which is not under 'bases'"),
        ("members:\n  - {name: ../up, path: add}\n", r"members\[0\]\.name: String should match pattern"),
        ("members: [\n", "malformed YAML"),
        ("bases: {b: {path: base}}\nmembers:\n  - {name: x, kind: lora, path: add, base: b}\n", "adapter_config.json is missing; is this a PEFT LoRA adapter"),
    ],
)
def test_bad_pool(pool_copy: Path, capsys: pytest.CaptureFixture[str], pool_yaml: str, expected: str) -> None:
    err = search_error(pool_copy, pool_yaml, capsys)
    assert err.startswith("mergefront: error: ")
    assert re.search(expected, err), err


def test_shape_mismatch_is_caught_before_any_trial(pool_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pool_copy / "pool" / "reverse" / "model.safetensors"
    tensors = load_file(path)
    key = "model.layers.0.mlp.up_proj.weight"
    tensors[key] = np.zeros((tensors[key].shape[0] + 1, tensors[key].shape[1]), dtype=tensors[key].dtype)
    save_file(tensors, path)
    err = search_error(pool_copy, MEMBERS, capsys)
    assert f"tensor '{key}' has shape" in err and "in 'reverse'" in err


def test_truncated_safetensors(pool_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pool_copy / "pool" / "reverse" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    err = search_error(pool_copy, MEMBERS, capsys)
    assert "member 'reverse'" in err and "corrupt or truncated" in err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("sampler: {name: tpee}", r"sampler\.name: unknown sampler 'tpee' \(did you mean 'tpe'\?\)"),
        ("merge: {method: slerp}", "unknown merge method 'slerp'"),
        ("merge: {method: linear, density: 0.5}", r"knob 'density' does not apply to method 'linear' \(its knobs: none\)"),
        ("merge: {method: ties, drop: 0.2}", r"knob 'drop' does not apply to method 'ties' \(its knobs: density, scale\)"),
        ("budget: {trials: 0}", r"budget\.trials: Input should be greater than or equal to 1"),
        ("seeed: 1", r"unknown key 'seeed' \(did you mean 'seed'\?\)"),
        ("space: {knobs: {scale: [0.5, 1.5]}}", r"'scale' is not a knob of merge method 'linear'"),
        ("merge: {method: ties}\nspace: {knobs: {density: [0.0, 0.5]}}", r"space.knobs: density = 0.0: Input should be greater than 0"),
        ("merge: {method: ties, scale: 1.0}\nspace: {knobs: {scale: [0.5, 1.5]}}", r"'scale' is searched, so do not also fix it under merge"),
        ("space: {groups: {vision: vision_tower}}", r"weight group\(s\) \['vision'\] match no tensor"),
        ("space: {kind: simplex, high: 2}", r"'low'/'high' apply to kind 'box' only"),
        ("report: [toy_sortt_report]", r"report\[0\]: task 'toy_sortt_report' is not defined"),
        ("report: [toy_reverse]\nobjectives: [toy_reverse]", r"'toy_reverse/acc' appears twice"),
        ("evaluation: {screen: 0}", r"evaluation\.screen: Input should be greater than or equal to 1"),
        ("budget: {wall_minutes: -1}", r"budget\.wall_minutes: Input should be greater than 0"),
        ("report: [{task: toy_sort_report, apply_chat_template: true}]", r"sets apply_chat_template, but the tokenizer in \S+ has no chat template"),
        ("report: [{task: toy_sort_report, gen_kwargs: {until: [1, 2]}}]", r"report\[0\]\.gen_kwargs\.until"),
        ("workers: {vllm: {gpu_memory_utilization: 1.5}}", r"workers\.vllm\.gpu_memory_utilization: Input should be less than or equal to 1"),
        ("workers: {backend: vlm}", r"unknown model backend 'vlm' \(did you mean 'vllm'\?\)"),
        pytest.param(
            "workers: {backend: vllm}", "workers.backend is vllm, but vLLM is not installed",
            marks=pytest.mark.skipif(find_spec("vllm") is not None, reason="vLLM is installed here"),
        ),
    ],
)
def test_bad_experiment(pool_copy: Path, capsys: pytest.CaptureFixture[str], extra: str, expected: str) -> None:
    err = search_error(pool_copy, MEMBERS, capsys, extra)
    assert re.search(expected, err), err


def test_unknown_task_and_metric(pool_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = write_experiment(pool_copy, pool_copy / "pool" / "checkpoints.yaml", pool_copy / "tasks")
    text = exp.read_text()
    exp.write_text(text.replace("task: toy_reverse,", "task: toy_revers,"))
    code, err = run_cli(["search", str(exp), "--runs-dir", str(pool_copy / "runs")], capsys)
    assert code == 2 and "task 'toy_revers' is not defined" in err and "did you mean 'toy_reverse'" in err
    exp.write_text(text.replace("metric: acc", "metric: accuracy"))
    code, err = run_cli(["search", str(exp), "--runs-dir", str(pool_copy / "runs")], capsys)
    assert code == 2 and "declares metrics ['acc', 'perplexity'], not 'accuracy'" in err
    assert not (pool_copy / "runs").exists()


def test_worker_overrides_are_validated(pool_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = write_experiment(pool_copy, pool_copy / "pool" / "checkpoints.yaml", pool_copy / "tasks")
    code, err = run_cli(["search", str(exp), "--runs-dir", str(pool_copy / "runs"), "--device", "gpu"], capsys)
    assert code == 2 and err.startswith("mergefront: error: --workers/--device/--threads: device: String should match pattern"), err
    assert len(err.splitlines()) == 1 and not (pool_copy / "runs").exists()


def test_front_of_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["front", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err


def test_real_process_exit_code_and_single_line(tmp_path: Path) -> None:
    """The installed console entry point, as a user runs it: exit 2, one line on stderr."""
    bad = tmp_path / "exp.yaml"
    bad.write_text("name: x\ntasks_dir: .\nobjectives: [t]\npool: missing.yaml\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from optimizer.cli import run; run()", "search", str(bad)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"mergefront: error: {bad}: pool: file 'missing.yaml' does not exist (resolved to {tmp_path}/missing.yaml); "
        "fix the path, which is relative to the YAML file"
    ]
    assert not (tmp_path / "runs").exists()


def test_resume_and_warm_start_need_a_run_directory(pool_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["resume", str(pool_copy / "nowhere")], capsys)
    assert code == 2 and "run.json does not exist; is" in err and "a run directory written by `mergefront search`" in err
    exp = write_experiment(pool_copy, pool_copy / "pool" / "checkpoints.yaml", pool_copy / "tasks")
    code, err = run_cli(["search", str(exp), "--runs-dir", str(pool_copy / "runs"), "--warm-start", str(pool_copy / "nowhere")], capsys)
    assert code == 2 and "run.json does not exist" in err
    assert not (pool_copy / "runs").exists()
