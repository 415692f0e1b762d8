"""Every causal-LM family a user would bring, each a tiny random model built here (no download):
`pool check`, `merge` against the formula, the export loads and generates with transformers, the
worker's live model equals what `from_pretrained` loads from the export (weights and logits), and a
4-trial search with the HF backend. Families whose files transformers renames or fuses on load
(GPT-NeoX, GPT-2 without its prefix, Mixtral, Qwen-MoE) are the point of this module."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    Gemma2Config,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    OPTConfig,
    Phi3Config,
    PretrainedConfig,
    Qwen2Config,
    Qwen2MoeConfig,
    Qwen3Config,
    Qwen3MoeConfig,
)

from evaluators.backends.hf import empty_model, live_targets
from evaluators.merge import MergePoint
from evaluators.merge.resident import MergeSetup
from evaluators.pool import load_pool
from optimizer.cli import main
from tests.helpers import safetensors_dir
from toy.tokenizer import build_tokenizer

TASKS = Path(__file__).resolve().parents[1] / "experiments" / "tasks" / "toy"
WEIGHTS = {"m0": 0.3, "m1": 0.7}
SMALL = {"vocab_size": 64, "hidden_size": 32, "num_attention_heads": 2}
DECODER = {**SMALL, "intermediate_size": 64, "num_hidden_layers": 2, "num_key_value_heads": 2}

FAMILIES: dict[str, Callable[[], PretrainedConfig]] = {
    "llama": lambda: LlamaConfig(**DECODER),
    "llama-tied": lambda: LlamaConfig(**DECODER, tie_word_embeddings=True),
    "mistral": lambda: MistralConfig(**DECODER),
    "qwen2": lambda: Qwen2Config(**DECODER),
    "qwen3": lambda: Qwen3Config(**DECODER, head_dim=16),
    "gemma2": lambda: Gemma2Config(**DECODER, head_dim=16),
    "phi3": lambda: Phi3Config(**DECODER, pad_token_id=0),
    "gpt2": lambda: GPT2Config(
        vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=1, eos_token_id=2
    ),
    "gpt_neox": lambda: GPTNeoXConfig(
        **SMALL, intermediate_size=64, num_hidden_layers=2, bos_token_id=1, eos_token_id=2
    ),
    "opt": lambda: OPTConfig(
        **SMALL, ffn_dim=64, num_hidden_layers=2, word_embed_proj_dim=32, max_position_embeddings=64
    ),
    "mixtral": lambda: MixtralConfig(**DECODER, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": lambda: Qwen2MoeConfig(
        **DECODER, moe_intermediate_size=16, shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2
    ),
    "qwen3_moe": lambda: Qwen3MoeConfig(
        **DECODER, head_dim=16, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2
    ),
}


def strip_prefix(directory: Path, prefix: str) -> None:
    """Rewrite a checkpoint without the base-model prefix, as older GPT-2 files are."""
    path = directory / "model.safetensors"
    tensors = {k.removeprefix(prefix): v.contiguous() for k, v in load_file(path).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Two members of one family (random, different seeds) with a tokenizer, and their pool file."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    for i in range(2):
        torch.manual_seed(i)
        AutoModelForCausalLM.from_config(FAMILIES[name]()).save_pretrained(root / f"m{i}")
        build_tokenizer().save_pretrained(root / f"m{i}")
    if name == "gpt2":
        strip_prefix(root / "m1", "transformer.")  # one member with, one without the prefix
    (root / "pool.yaml").write_text("members:\n  - {name: m0, path: m0}\n  - {name: m1, path: m1}\n")
    return name, root


def test_pool_check_merge_formula_and_the_export_loads_and_generates(family: tuple[str, Path], tmp_path: Path) -> None:
    name, root = family
    pool = root / "pool.yaml"
    assert main(["pool", "check", str(pool)]) == 0
    out = tmp_path / "merged"
    assert main(["merge", "--pool", str(pool), "--weights", "m0=0.3,m1=0.7", "--out", str(out)]) == 0
    m0, m1, got = safetensors_dir(root / "m0"), safetensors_dir(root / "m1"), safetensors_dir(out)
    assert set(got) == set(m0)
    for key, value in got.items():
        other = m1.get(key, m1.get(key.removeprefix("transformer."), None))
        assert other is not None, key
        torch.testing.assert_close(value.double(), 0.3 * m0[key].double() + 0.7 * other.double(), rtol=1e-6, atol=1e-7)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    generated = model.generate(torch.tensor([[1, 5, 7]]), max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert generated.shape == (1, 6), name


def test_the_live_model_is_what_transformers_loads(family: tuple[str, Path], tmp_path: Path) -> None:
    name, root = family
    out = tmp_path / "merged"
    assert main(["merge", "--pool", str(root / "pool.yaml"), "--weights", "m0=0.3,m1=0.7", "--out", str(out)]) == 0
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    source = MergeSetup(pool=load_pool(root / "pool.yaml"))
    plan = source.plan()
    live = empty_model(source, plan, plan.model_dtype(), torch.device("cpu"))
    merger, _ = source.merger(torch.device("cpu"), plan)
    targets = live_targets(live, plan)
    merger.check_targets(targets)
    merger.merge_into(MergePoint(WEIGHTS), targets)
    expected, got = loaded.state_dict(), live.state_dict()
    assert set(expected) == set(got), name
    for key, tensor in expected.items():
        assert torch.equal(tensor, got[key]), f"{name}: {key}"
    ids = torch.tensor([[1, 5, 9, 33, 2]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, live(ids).logits), name


def test_a_four_trial_search_runs_on_the_family(family: tuple[str, Path], tmp_path: Path) -> None:
    name, root = family
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(
        f"name: arch\npool: {root / 'pool.yaml'}\ntasks_dir: {TASKS}\n"
        "objectives:\n  - {task: toy_add, metric: perplexity, direction: minimize, limit: 4}\n  - {task: toy_sort, limit: 4}\n"
        "budget: {trials: 4}\nsampler: {name: random}\nevaluation: {bootstrap_iters: 0}\n"
        "workers: {count: 1, threads: 1, batch_size: 4}\n"
    )
    # in this process: the family's worker is what is under test (Ray's actors are family-blind and
    # tested elsewhere); a Ray actor's start-up would take 8-9 s of the search's 10-12
    assert main(["search", str(experiment), "--runs-dir", str(tmp_path / "runs"), "--no-progress", "--in-process"]) == 0
    trials = pd.read_parquet(tmp_path / "runs" / "arch" / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 4, name
    assert trials["score__toy_add_perplexity"].notna().all()


def test_config_families_are_what_the_module_says() -> None:
    """Guard: each family's config really is that architecture (a typo would test Llama twice)."""
    for name, make in FAMILIES.items():
        config = make()
        assert json.loads(config.to_json_string())["model_type"] == name.removesuffix("-tied"), name
        assert AutoConfig.for_model(config.model_type).__class__ is type(config)
