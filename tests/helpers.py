"""Helpers shared by the test modules: pool and experiment writers, a search run through the CLI, the
front recomputed independently, the swap contract every model backend keeps, a free port. Fixtures stay
in conftest.py; tests/park.py parks a driver on Ray."""

from __future__ import annotations

import hashlib
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from huggingface_hub.file_download import repo_folder_name
from safetensors.torch import load_file

from evaluators.backends import BackendSpec
from evaluators.merge import MergeSpec
from evaluators.merge.engine import PoolMerger, plan_for
from evaluators.merge.point import MergePoint
from evaluators.pool import load_pool
from evaluators.pool.tiers import TIERS
from evaluators.scoring.tasks import TaskSpec
from evaluators.worker import TrialResult, Worker, WorkerSpec

MEMBERS = ("add", "reverse", "sort", "shift")
OBJECTIVES = ["toy_add/perplexity", "toy_reverse/acc"]
SCORES = ["score__toy_add_perplexity", "score__toy_reverse_acc"]  # as stored: SQL-friendly names
SIGNS = np.array([-1.0, 1.0])  # perplexity is minimised, accuracy maximised


TINY_RUN_TRIALS = 8  # conftest's tiny_run: 5 baselines, then 3 of TPE's seeded start-up proposals
TINY_RUN_PRINTED = "search-printed.txt"  # what tiny_run's command printed, beside its run directory


def write_experiment(
    directory: Path, pool_file: Path, tasks_dir: Path, extra: str = "", trials: int = 6, backend: str = "hf"
) -> Path:
    """An experiment YAML for the tiny pool: perplexity on add (min) and accuracy on reverse (max), two
    workers on ``backend`` (``dummy``: the same search with synthetic scores, see evaluators/backends/dummy.py)."""
    path = directory / "exp.yaml"
    chosen = "" if backend == "hf" else f"backend: {backend}, "
    path.write_text(
        f"""\
name: tiny
pool: {pool_file}
tasks_dir: {tasks_dir}
objectives:
  - {{task: toy_add, metric: perplexity, direction: minimize}}
  - {{task: toy_reverse, metric: acc, direction: maximize}}
budget: {{trials: {trials}}}
workers: {{{chosen}count: 2, threads: 1, batch_size: 32}}
{extra}"""
    )
    return path


def tiny_experiment(tiny_pool: Path, directory: Path, extra: str = "", trials: int = 6, backend: str = "dummy") -> Path:
    """``write_experiment`` on the session's tiny pool (dummy scores unless told otherwise)."""
    return write_experiment(
        directory, tiny_pool / "pool" / "checkpoints.yaml", tiny_pool / "tasks", extra, trials, backend
    )


def search(exp: Path, runs: Path, *flags: str) -> pd.DataFrame:
    """``mergefront search`` (exit code 0 expected); returns the run's trials."""
    from optimizer.cli import main

    assert main(["search", str(exp), "--runs-dir", str(runs), "--no-progress", *flags]) == 0
    return pd.read_parquet(runs / "tiny" / "trials.parquet")


def non_dominated(trials: pd.DataFrame, columns: Sequence[str] = SCORES, signs: np.ndarray = SIGNS) -> set[int]:
    """The complete trials no other complete trial dominates, computed apart from optimizer.store.pareto."""
    done = trials[trials["state"] == "COMPLETE"]
    signed = done[list(columns)].to_numpy() * signs
    return {
        int(t)
        for t, row in zip(done["trial"], signed, strict=True)
        if not any((o >= row).all() and (o > row).any() for o in signed)
    }


def five_member_pool(tiny_pool: Path, directory: Path) -> Path:
    """The tiny pool plus its base as a fifth member."""
    pool = tiny_pool / "pool"
    lines = ["name: toy5", "bases:", f"  toy-base: {{path: {pool / 'base'}}}", "members:"]
    lines += [f"  - {{name: {m}, path: {pool / m}}}" for m in MEMBERS]
    lines.append("  - {name: base, kind: base, base: toy-base}")
    path = directory / "pool5.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_pool(directory: Path, text: str) -> Path:
    path = directory / "pool.yaml"
    path.write_text(text)
    return path


def tiny_llama(
    directory: Path,
    seed: int,
    vocab: int = 40,
    tied: bool = False,
    positions: int = 64,
    intermediate: int = 64,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """A random one-layer Llama (hidden size 32) saved in ``dtype`` with ``save_pretrained``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=intermediate,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).to(dtype).save_pretrained(directory)
    return directory


def safetensors_dir(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory's safetensors files."""
    return {k: v for p in sorted(directory.glob("*.safetensors")) for k, v in load_file(p).items()}


def live_merger(
    pool_file: Path, spec: MergeSpec, groups: dict[str, str] | None = None, tier: str = "host"
) -> PoolMerger:
    plan = plan_for(load_pool(pool_file), spec)
    return PoolMerger(plan, spec, TIERS.get(tier)(plan, torch.device("cpu")), torch.device("cpu"), groups)


def resident_state(
    pool_file: Path, spec: MergeSpec, weights: dict[str, float], tied: bool = False
) -> dict[str, torch.Tensor]:
    """The merge written in place into a model built from the pool's config, as a worker does."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    merger = live_merger(pool_file, spec)
    model = AutoModelForCausalLM.from_config(LlamaConfig.from_pretrained(merger.plan.model_dir()))
    targets = dict(model.named_parameters())
    merger.check_targets(targets)
    merger.merge_into(MergePoint(weights), targets)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def two_lora_pool(tmp_path: Path) -> tuple[Path, Path, list[dict[str, torch.Tensor]]]:
    """Two random rank-4 PEFT adapters on one tiny base: (base dir, pool file, each adapter merged by peft)."""
    import peft
    from transformers import AutoModelForCausalLM

    base_dir = tiny_llama(tmp_path / "base", 0)
    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = peft.get_peft_model(
            AutoModelForCausalLM.from_pretrained(base_dir),
            peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        )
        model.save_pretrained(tmp_path / f"lora{seed}")
        adapters.append(model.merge_and_unload().state_dict())
    pool_file = write_pool(
        tmp_path,
        f"bases: {{b: {{path: {base_dir}}}}}\nmembers:\n  - {{name: l1, kind: lora, path: {tmp_path / 'lora1'}, base: b}}\n"
        f"  - {{name: l2, kind: lora, path: {tmp_path / 'lora2'}, base: b}}\n",
    )
    return base_dir, pool_file, adapters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The swap contract every model backend must keep, checked on the tiny pool (tests/test_backend_contract.py,
# tests/test_vllm.py).


def one_hot(member: str) -> MergePoint:
    return MergePoint(weights={m: float(m == member) for m in MEMBERS})


class Evaluates(Protocol):
    """A worker, in this process or behind a Ray actor."""

    def evaluate(self, point: MergePoint) -> TrialResult: ...


def tiny_spec(tiny_pool: Path, runtime: BackendSpec) -> WorkerSpec:
    """A worker scoring a continuous metric (perplexity on add) and a discrete one (accuracy on sort)."""
    return WorkerSpec(
        pool=load_pool(tiny_pool / "pool" / "checkpoints.yaml"),
        objectives={
            "add": TaskSpec(task="toy_add", metric="perplexity"),
            "sort": TaskSpec(task="toy_sort", metric="acc"),
        },
        tasks_dir=tiny_pool / "tasks",
        runtime=runtime,
        bootstrap_iters=0,
    )


def tiny_worker(tiny_pool: Path, runtime: BackendSpec) -> Worker:
    return Worker(tiny_spec(tiny_pool, runtime))


def scores(worker: Evaluates, point: MergePoint) -> dict[str, float]:
    return {k: s.value for k, s in worker.evaluate(point).scores.items()}


def assert_swaps_change_and_restore(worker: Evaluates) -> dict[str, dict[str, float]]:
    """Swapping to another member changes the scores; swapping back gives the first scores exactly."""
    first = scores(worker, one_hot("add"))
    other = scores(worker, one_hot("sort"))
    again = scores(worker, one_hot("add"))
    assert other["add"] != first["add"], "a different checkpoint should score differently"
    assert again == first, "swapping back must restore the original scores exactly"
    return {"add": first, "sort": other}


ARC_ROW = {
    "id": "q1",
    "question": "Which is a color?",
    "choices": {"text": ["red", "dog"], "label": ["A", "B"]},
    "answerKey": "A",
}
ARC_ROWS = [  # the second as long as ARC's questions are, more characters than the toy models' 64 positions
    ARC_ROW,
    {
        "id": "q2",
        "question": "Two cups of water stand in the sun, one narrow and one wide. Why does the wide one dry out first?",
        "choices": {
            "text": ["More of its water touches the air.", "It holds more water.", "It is colder.", "It is taller."],
            "label": ["A", "B", "C", "D"],
        },
        "answerKey": "A",
    },
]
ARC_SPLITS = ("train", "validation", "test")  # allenai/ai2_arc's, in each config


def cache_hub_dataset(datasets_cache: Path, repo: str, config: str, rows: list[dict], splits: Sequence[str]) -> Path:
    """Put ``rows`` (each split the same) into the datasets cache as the prepared copy of hub dataset ``repo``'s
    ``config``, where and as ``load_dataset`` leaves a download (``<owner>___<name>/<config>/<version>/<commit>``,
    written by datasets' own json builder): offline, ``load_dataset(repo, config)``, and so lm-eval, reads it as that
    hub dataset. Returns its folder."""
    import json
    import tempfile

    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.json.json import Json

    owner, name = repo.split("/")
    out = datasets_cache / f"{owner}___{camelcase_to_snakecase(name)}" / config / "0.0.0" / ("0" * 40)
    with tempfile.TemporaryDirectory() as scratch:
        files = {split: str(Path(scratch) / f"{split}.jsonl") for split in splits}
        for path in files.values():
            Path(path).write_text("".join(json.dumps(row) + "\n" for row in rows))
        builder = Json(cache_dir=scratch, dataset_name=name, config_name=config, data_files=files)
        builder.download_and_prepare(output_dir=str(out))
    return out


def cache_model(cache: Path, repo_id: str, source: Path) -> Path:
    """Put the model directory ``source`` into the hub cache ``cache`` as ``repo_id`` at a made-up commit."""
    repo = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    for file in source.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = repo / "snapshots" / commit / file.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit
