"""LoRA members read as peft reads them.

Every adapter_config.json field that changes a module's delta (r and lora_alpha with peft's defaults,
use_rslora, rank_pattern, alpha_pattern, the Conv1D layout behind fan_in_fan_out) is checked against
peft's own ``merge_and_unload`` of the same adapter on the same base; ``--as-adapter`` output is read
back by peft; adapters mergefront cannot merge are refused with their real cause. Every expected value
comes from peft, computed here on tiny random float32 models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from optimizer.cli import main

peft = pytest.importorskip("peft")

LLAMA_TARGETS = ["q_proj", "v_proj", "o_proj"]
GPT2_TARGETS = ["c_attn", "c_proj"]  # Conv1D modules: weights [in, out], peft sets fan_in_fan_out for them
TOL: dict[str, Any] = {"rtol": 1e-5, "atol": 1e-5}
State = dict[str, torch.Tensor]


def llama(directory: Path) -> Path:
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def gpt2(directory: Path) -> Path:
    config = GPT2Config(vocab_size=40, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


def adapter(base: Path, out: Path, seed: int, config: peft.PeftConfig, edit: dict[str, Any] | None = None) -> Path:
    """A random peft adapter of ``base`` (B is not zero), saved; then its config edited (None deletes a key)."""
    torch.manual_seed(seed)
    peft.get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(out)
    path = out / "adapter_config.json"
    saved = json.loads(path.read_text())
    for key, value in (edit or {}).items():
        if value is None:
            saved.pop(key)
        else:
            saved[key] = value
    path.write_text(json.dumps(saved))
    return out


def by_peft(base: Path, adapter_dir: Path) -> State:
    """The reference: peft loads the adapter (its config as saved) on the base and merges it."""
    model = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter_dir)
    return {k: v.detach() for k, v in model.merge_and_unload().state_dict().items()}


def pool_of(directory: Path, base: Path, adapters: dict[str, Path]) -> Path:
    members = "".join(f"  - {{name: {name}, kind: lora, path: {path}, base: b}}\n" for name, path in adapters.items())
    path = directory / "pool.yaml"
    path.write_text(f"bases: {{b: {{path: {base}}}}}\nmembers:\n{members}")
    return path


def ours(pool: Path, weights: str, out: Path) -> State:
    """Our merge with the weights as given (peft's references weigh the adapters' merges by them unnormalized)."""
    assert main(["merge", "--pool", str(pool), "--weights", weights, "--no-normalize", "--out", str(out)]) == 0
    return load_file(out / "model.safetensors")


def assert_same(base: Path, mine: State, reference: State) -> None:
    """Every tensor of the base's files, merged, equals peft's (a tied head is not in the files)."""
    assert mine.keys() == load_file(base / "model.safetensors").keys()
    for key, tensor in mine.items():
        torch.testing.assert_close(tensor, reference[key], **TOL, msg=lambda m, key=key: f"{key}: {m}")


def lora(**kwargs: Any) -> Callable[[], peft.PeftConfig]:
    """A fresh LoraConfig per use (peft mutates it), with a random B so that every delta is non-zero."""
    return lambda: peft.LoraConfig(init_lora_weights=False, **kwargs)


LLAMA = {"r": 4, "lora_alpha": 8, "target_modules": LLAMA_TARGETS}
ALPHA_PATTERN = lora(**LLAMA, alpha_pattern={"o_proj": 32})
FIRST_MATCH = {r"layers\.1\.self_attn\.o_proj": 2, "o_proj": 32, r"model\.layers\.\d\.self_attn\.(q|v)_proj": 4}
RSLORA = lora(**LLAMA, use_rslora=True, rank_pattern={"o_proj": 16}, alpha_pattern={"q_proj": 2})
CONV1D = lora(r=4, lora_alpha=8, target_modules=GPT2_TARGETS)
Case = tuple[Callable[[Path], Path], Callable[[], peft.PeftConfig], dict[str, Any] | None]
SINGLE: dict[str, Case] = {
    "alpha_pattern": (llama, ALPHA_PATTERN, None),
    "alpha_pattern_regex_first_match_wins": (llama, lora(**LLAMA, alpha_pattern=FIRST_MATCH), None),
    "rank_pattern": (llama, lora(**LLAMA, rank_pattern={"o_proj": 8}), None),
    "rslora_with_patterns": (llama, RSLORA, None),
    "lora_alpha_absent": (llama, lora(r=4, lora_alpha=32, target_modules=LLAMA_TARGETS), {"lora_alpha": None}),
    "r_absent": (llama, lora(r=8, lora_alpha=32, target_modules=LLAMA_TARGETS), {"r": None}),
    "gpt2_conv1d": (gpt2, CONV1D, None),
    "gpt2_conv1d_flag_false": (gpt2, CONV1D, {"fan_in_fan_out": False}),
}


@pytest.mark.parametrize("case", sorted(SINGLE))
def test_one_adapter_merges_as_peft_merges_it(tmp_path: Path, case: str) -> None:
    arch, config, edit = SINGLE[case]
    base = arch(tmp_path / "base")
    ad = adapter(base, tmp_path / "ad", 1, config(), edit)
    assert_same(base, ours(pool_of(tmp_path, base, {"ad": ad}), "ad=1", tmp_path / "out"), by_peft(base, ad))


CONV1D_PATTERN = lora(r=2, lora_alpha=8, target_modules=GPT2_TARGETS, alpha_pattern={"attn.c_proj": 1})
PAIRS = {"llama_patterns": (llama, ALPHA_PATTERN, RSLORA), "gpt2_conv1d": (gpt2, CONV1D, CONV1D_PATTERN)}


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_two_adapters_merge_to_the_weighted_sum_of_peft_merges(tmp_path: Path, case: str) -> None:
    arch, first, second = PAIRS[case]
    base = arch(tmp_path / "base")
    a, b = adapter(base, tmp_path / "a", 1, first()), adapter(base, tmp_path / "b", 2, second())
    pa, pb = by_peft(base, a), by_peft(base, b)
    mine = ours(pool_of(tmp_path, base, {"a": a, "b": b}), "a=0.3,b=0.9", tmp_path / "out")
    assert_same(base, mine, {k: 0.3 * pa[k] + 0.9 * pb[k] for k in pa})


def factorwise_by_peft(base: Path, adapters: list[Path], weights: list[float]) -> State:
    """lora_factorwise's reference: peft merges one adapter whose A and B are the weighted sums of theirs."""
    models = [peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), a) for a in adapters]
    layers = [{n: m for n, m in model.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)} for model in models]
    for name, layer in layers[0].items():
        for factor in ("lora_A", "lora_B"):
            mixed = sum(
                w * getattr(each[name], factor)["default"].weight.detach()
                for w, each in zip(weights, layers, strict=True)
            )
            getattr(layer, factor)["default"].weight.data = mixed
    return {k: v.detach() for k, v in models[0].merge_and_unload().state_dict().items()}


SHARED = lora(
    **LLAMA, alpha_pattern={"o_proj": 32}, rank_pattern={"v_proj": 8}
)  # lora_factorwise: one rank and scale per module
AS_ADAPTER = {
    "llama_alpha_pattern-linear": (llama, "linear", ALPHA_PATTERN, lora(**LLAMA, alpha_pattern=FIRST_MATCH)),
    "llama_patterns-linear": (llama, "linear", ALPHA_PATTERN, RSLORA),
    "llama_patterns-lora_factorwise": (llama, "lora_factorwise", SHARED, SHARED),
    "gpt2_conv1d-linear": (gpt2, "linear", CONV1D, CONV1D_PATTERN),
    "gpt2_conv1d-lora_factorwise": (gpt2, "lora_factorwise", CONV1D, CONV1D),
}


@pytest.mark.parametrize("case", sorted(AS_ADAPTER))
def test_as_adapter_is_read_back_by_peft_as_the_merge(tmp_path: Path, case: str) -> None:
    arch, method, first, second = AS_ADAPTER[case]
    base = arch(tmp_path / "base")
    a, b = adapter(base, tmp_path / "a", 1, first()), adapter(base, tmp_path / "b", 2, second())
    pool = pool_of(tmp_path, base, {"a": a, "b": b})
    out = tmp_path / "merged"
    assert (
        main(
            [
                "merge",
                "--pool",
                str(pool),
                "--method",
                method,
                "--weights",
                "a=0.3,b=0.7",
                "--as-adapter",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    if method == "linear":
        pa, pb = by_peft(base, a), by_peft(base, b)
        expected = {k: 0.3 * pa[k] + 0.7 * pb[k] for k in pa}
    else:
        expected = factorwise_by_peft(base, [a, b], [0.3, 0.7])
    read_back = by_peft(base, out)
    for key, tensor in expected.items():
        torch.testing.assert_close(read_back[key], tensor, **TOL, msg=lambda m, key=key: f"{key}: {m}")


FIX = ["merge_and_unload", "'finetune' member"]
REFUSED: dict[str, tuple[Callable[[Path], Path], Callable[[], peft.PeftConfig], dict[str, Any] | None, list[str]]] = {
    "dora": (llama, lora(r=2, target_modules=["q_proj"], use_dora=True), None, ["DoRA", "use_dora", *FIX]),
    "modules_to_save": (
        llama,
        lora(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"]),
        None,
        ["modules_to_save", "lm_head", *FIX],
    ),
    "embedding": (
        llama,
        lora(r=2, target_modules=["q_proj", "embed_tokens"]),
        None,
        ["embedding", "model.embed_tokens", *FIX],
    ),
    "lora_bias": (gpt2, lora(r=2, target_modules=["c_attn"], lora_bias=True), None, ["lora_bias", *FIX]),
    "bias_all": (gpt2, lora(r=2, target_modules=["c_attn"], bias="all"), None, ["bias: all", *FIX]),
    "not_lora": (
        llama,
        lambda: peft.LoHaConfig(r=2, target_modules=["q_proj"], init_weights=False),
        None,
        ["LOHA", *FIX],
    ),
    "init_rewrites_base": (
        llama,
        lora(r=2, target_modules=["q_proj"]),
        {"init_lora_weights": "olora"},
        ["init_lora_weights 'olora'", "path_initial_model_for_weight_conversion", *FIX],
    ),
    "rank_pattern_not_the_factors": (
        llama,
        lora(**LLAMA),
        {"rank_pattern": {"o_proj": 8}},
        ["rank 8", "rank 4", "rank_pattern", "o_proj"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_adapters_we_cannot_merge_are_refused_with_their_cause(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    arch, config, edit, pieces = REFUSED[case]
    base = arch(tmp_path / "base")
    pool = pool_of(tmp_path, base, {"ad": adapter(base, tmp_path / "ad", 1, config(), edit)})
    capsys.readouterr()
    assert main(["merge", "--pool", str(pool), "--weights", "ad=1", "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "member 'ad'" in lines[0], lines
    assert all(piece in lines[0] for piece in pieces) and "another base" not in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_peft_itself_refuses_a_rank_pattern_that_does_not_match_the_factors(tmp_path: Path) -> None:
    """The refusal above is peft's own verdict, not a limitation of ours."""
    arch, config, edit, _ = REFUSED["rank_pattern_not_the_factors"]
    base = arch(tmp_path / "base")
    with pytest.raises(RuntimeError, match="size mismatch"):
        by_peft(base, adapter(base, tmp_path / "ad", 1, config(), edit))
