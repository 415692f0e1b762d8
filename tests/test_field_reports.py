"""Checkpoints as people have them (issue 15's field reports): added tokens, generation configs, tied
configs whose files hold the head too, weight files beside the ones transformers reads, and tensors
whose size only happens to equal the vocabulary. The expected value is always what transformers
loads (`from_pretrained`), computed in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GenerationConfig, LlamaForCausalLM

from evaluators.backends import BackendSpec
from evaluators.backends.hf import empty_model, live_targets
from evaluators.merge import MergePoint, MergeSpec
from evaluators.merge.engine import plan_for, stream_merge
from evaluators.merge.resident import MergeSetup
from evaluators.pool import load_pool
from evaluators.scoring.tasks import TaskSpec
from evaluators.worker import Worker, WorkerSpec
from optimizer.cli import main
from tests.helpers import tiny_llama
from toy.tokenizer import build_tokenizer

TASKS = Path(__file__).resolve().parents[1] / "experiments" / "tasks" / "toy"


def llama(directory: Path, seed: int, vocab: int = 40, tied: bool = False, intermediate: int = 64) -> Path:
    """tests.helpers.tiny_llama with the toy tokenizer beside it."""
    tiny_llama(directory, seed, vocab, tied, positions=2048, intermediate=intermediate)  # LlamaConfig's default
    build_tokenizer().save_pretrained(directory)
    return directory


def live_equals_loaded(pool_file: Path, spec: MergeSpec, weights: dict[str, float], out: Path) -> torch.nn.Module:
    """Merge into the worker's live model and into an exported directory; assert transformers loads the
    export as exactly the live model (weights, logits, generation config). Returns the live model."""
    source = MergeSetup(pool=load_pool(pool_file), merge=spec)
    plan = source.plan()
    stream_merge(plan, spec, MergePoint(weights), out)
    live = empty_model(source, plan, plan.model_dtype(), torch.device("cpu"))
    merger, _ = source.merger(torch.device("cpu"), plan)
    targets = live_targets(live, plan)
    merger.check_targets(targets)
    merger.merge_into(MergePoint(weights), targets)
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    assert set(loaded.state_dict()) == set(live.state_dict())
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, live.state_dict()[key]), key
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, live(ids).logits)
    assert loaded.generation_config.to_dict() == live.generation_config.to_dict()
    return live


def test_a_finetune_with_added_tokens_searches_under_task_arithmetic(tmp_path: Path) -> None:
    base = llama(tmp_path / "base", 0, vocab=40)
    model = LlamaForCausalLM.from_pretrained(llama(tmp_path / "ft", 1, vocab=40))
    model.resize_token_embeddings(42)  # the fine-tune added two tokens
    model.save_pretrained(tmp_path / "ft")
    pool = tmp_path / "pool.yaml"
    pool.write_text(
        f"bases: {{b: {{path: {base}}}}}\nmembers:\n  - {{name: ft, kind: finetune, path: {tmp_path / 'ft'}, base: b}}\n"
    )
    spec = MergeSpec(method="task_arithmetic", scale=0.7)
    live = live_equals_loaded(pool, spec, {"ft": 1.0}, tmp_path / "out")
    assert live.get_input_embeddings().weight.shape == (42, 32)
    worker = Worker(
        WorkerSpec(  # the worker that failed to start
            pool=load_pool(pool),
            objectives={"add": TaskSpec(task="toy_add", metric="perplexity", limit=4)},
            tasks_dir=TASKS,
            runtime=BackendSpec(batch_size=4),
            merge=spec,
            bootstrap_iters=0,
        )
    )
    assert worker.evaluate(MergePoint({"ft": 0.5})).scores["add"].value > 0


def test_the_generation_config_is_the_one_transformers_loads(tmp_path: Path) -> None:
    for i in range(2):
        llama(tmp_path / f"m{i}", i)
        GenerationConfig(repetition_penalty=1.3, do_sample=False, max_new_tokens=7).save_pretrained(tmp_path / f"m{i}")
    pool = tmp_path / "pool.yaml"
    pool.write_text(f"members:\n  - {{name: m0, path: {tmp_path / 'm0'}}}\n  - {{name: m1, path: {tmp_path / 'm1'}}}\n")
    live = live_equals_loaded(pool, MergeSpec(), {"m0": 0.5, "m1": 0.5}, tmp_path / "out")
    assert live.generation_config.repetition_penalty == 1.3


def test_a_tied_config_whose_files_hold_the_head_too_loads_untied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(2):
        directory = llama(tmp_path / f"m{i}", i, tied=True)
        tensors = load_file(directory / "model.safetensors")
        tensors["lm_head.weight"] = torch.randn(40, 32)  # different from the embeddings
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    pool = tmp_path / "pool.yaml"
    pool.write_text(f"members:\n  - {{name: m0, path: {tmp_path / 'm0'}}}\n  - {{name: m1, path: {tmp_path / 'm1'}}}\n")
    assert main(["pool", "check", str(pool)]) == 0
    assert "loads them untied" in capsys.readouterr().out
    live = live_equals_loaded(pool, MergeSpec(), {"m0": 0.25, "m1": 0.75}, tmp_path / "out")
    assert live.lm_head.weight.data_ptr() != live.model.embed_tokens.weight.data_ptr()
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out", local_files_only=True)
    exported.tie_weights()  # as lm-eval's HFLM does after loading: the export must stay the searched model
    assert torch.equal(exported.lm_head.weight, live.lm_head.weight)


def test_weight_files_are_the_ones_transformers_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = llama(tmp_path / "m", 0)
    stale = {k: torch.zeros_like(v) for k, v in load_file(directory / "model.safetensors").items()}
    save_file(stale, str(directory / "old-00001-of-00001.safetensors"), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": dict.fromkeys(stale, "old-00001-of-00001.safetensors")}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))  # transformers prefers model.safetensors
    pool = tmp_path / "pool.yaml"
    pool.write_text(f"members:\n  - {{name: m, path: {directory}}}\n")
    live_equals_loaded(pool, MergeSpec(), {"m": 1.0}, tmp_path / "out")
    assert main(["pool", "check", str(pool)]) == 0
    out = capsys.readouterr().out
    assert (
        "model.safetensors (" in out and "ignored model.safetensors.index.json, old-00001-of-00001.safetensors" in out
    )
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(
        json.dumps({**config, "transformers_weights": "model.safetensors.index.json"})
    )
    live = live_equals_loaded(pool, MergeSpec(), {"m": 1.0}, tmp_path / "out2")  # now the named index wins
    assert not live.model.embed_tokens.weight.any()


def test_vocabulary_rows_come_from_the_embeddings_not_from_a_size(tmp_path: Path) -> None:
    """The MLP's width equals the vocabulary: only the embeddings and the head are padded for added tokens."""
    llama(tmp_path / "a", 0, vocab=64, intermediate=64)
    model = LlamaForCausalLM.from_pretrained(llama(tmp_path / "b", 1, vocab=64, intermediate=64))
    model.resize_token_embeddings(66)
    model.save_pretrained(tmp_path / "b")
    pool = tmp_path / "pool.yaml"
    pool.write_text(f"members:\n  - {{name: a, path: {tmp_path / 'a'}}}\n  - {{name: b, path: {tmp_path / 'b'}}}\n")
    plan = plan_for(load_pool(pool), MergeSpec())
    assert plan.tensors["model.layers.0.mlp.up_proj.weight"].shape == (64, 32)
    assert plan.tensors["model.embed_tokens.weight"].shape == (66, 32) and plan.tensors["lm_head.weight"].shape == (
        66,
        32,
    )
    live_equals_loaded(pool, MergeSpec(), {"a": 0.5, "b": 0.5}, tmp_path / "out")
