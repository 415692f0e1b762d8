"""Pool tiers: device, host and disk placements and the streamed export give bit-identical merges on a
pool that mixes a sharded checkpoint, tied embeddings, a LoRA member and a transfer member (with an
added-token vocabulary), and the worker's empty-built model equals what transformers loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from evaluators.backends.hf import empty_model, live_targets
from evaluators.merge import MergePoint, MergeSpec
from evaluators.merge.engine import plan_for, stream_merge
from evaluators.merge.resident import MergeSetup
from evaluators.pool import load_pool
from evaluators.pool.tiers import Placement, choose_tier
from tests.helpers import safetensors_dir

WEIGHTS = {"c": 0.4, "t": 0.3, "l": 0.2, "b": 0.1}


def bf16_llama(directory: Path, seed: int, vocab: int = 40, shard: str | None = None) -> Path:
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, **({"max_shard_size": shard} if shard else {}))
    return directory


@pytest.fixture(scope="module")
def mixed_pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """The pool file, and peft's own merge of the LoRA member (the reference for its value)."""
    import peft

    root = tmp_path_factory.mktemp("mixed")
    base = bf16_llama(root / "base", 0)
    bf16_llama(root / "ckpt", 1, shard="20KB")
    bf16_llama(root / "v1", 2)
    bf16_llama(root / "v1-ft", 3, vocab=44)  # the fine-tune added 4 tokens
    torch.manual_seed(4)
    lora = peft.get_peft_model(  # in float32, so that peft's merge is not rounded to bf16 before the test's sum
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(root / "lora")
    reference = {k: v.detach().clone() for k, v in lora.merge_and_unload().state_dict().items()}
    pool = root / "pool.yaml"
    pool.write_text(
        "bases: {b: {path: base}}\nmembers:\n  - {name: c, path: ckpt}\n"
        "  - {name: t, kind: transfer, source_finetune: v1-ft, source_base: v1, target_base: b}\n"
        "  - {name: l, kind: lora, path: lora, base: b}\n  - {name: b, kind: base, base: b}\n"
    )
    assert len(list((root / "ckpt").glob("*.safetensors"))) > 1, "the checkpoint member should be sharded"
    return pool, reference


def live_merge(pool_file: Path, spec: MergeSpec, tier: str) -> tuple[torch.nn.Module, Placement]:
    """The merge written into the worker's empty-built model, with the sources in ``tier``."""
    source = MergeSetup(pool=load_pool(pool_file), merge=spec, tier=tier)
    plan = source.plan()
    model = empty_model(source, plan, plan.model_dtype(), torch.device("cpu"))
    merger, placement = source.merger(torch.device("cpu"), plan)
    targets = live_targets(model, plan)
    merger.check_targets(targets)
    merger.merge_into(MergePoint(WEIGHTS, knobs={}), targets)
    return model, placement


@pytest.mark.parametrize("method", ["linear", "task_arithmetic"])
def test_every_tier_and_the_export_merge_bit_identically(
    mixed_pool: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, method: str
) -> None:
    pool_file, _ = mixed_pool
    spec = MergeSpec(method=method, scale=0.9 if method == "task_arithmetic" else None)
    exported = safetensors_dir(
        stream_merge(
            plan_for(load_pool(pool_file), spec), spec, MergePoint(WEIGHTS), tmp_path / "out", max_shard_bytes=30_000
        )
    )
    assert "lm_head.weight" not in exported and exported["model.embed_tokens.weight"].shape == (44, 32)
    for tier in ("device", "host", "disk"):
        model, placement = live_merge(pool_file, spec, tier)
        assert placement.tier == tier
        live = model.state_dict()
        for key, tensor in exported.items():
            assert live[key].dtype == tensor.dtype == torch.bfloat16
            assert torch.equal(live[key].view(torch.int16), tensor.view(torch.int16)), f"{tier}: {key}"
        assert model.lm_head.weight is model.model.embed_tokens.weight


def test_the_merge_equals_the_formula_with_peft_and_transfer_references(
    mixed_pool: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    pool_file, lora_reference = mixed_pool
    root = pool_file.parent
    got = safetensors_dir(
        stream_merge(plan_for(load_pool(pool_file), MergeSpec()), MergeSpec(), MergePoint(WEIGHTS), tmp_path / "out")
    )
    c, b, v1, ft = (safetensors_dir(root / d) for d in ("ckpt", "base", "v1", "v1-ft"))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return (
            torch.cat([t.double(), torch.zeros(44 - t.shape[0], *t.shape[1:], dtype=torch.float64)])
            if t.shape[0] == 40
            else t.double()
        )

    for key, value in got.items():
        terms = [
            0.4 * pad(c[key]),
            0.3 * pad(b[key]),
            0.3 * ft[key].double(),
            -0.3 * pad(v1[key]),
            0.2 * pad(lora_reference[key]),
            0.1 * pad(b[key]),
        ]
        expected = sum(terms)
        # one bf16 rounding (half a step: at most 2^-8 relative) of a float32 sum (2^-24 per term's magnitude)
        bound = expected.abs() * 2**-8 + 2**-22 * sum(t.abs() for t in terms)
        assert ((value.double() - expected).abs() <= bound).all(), key


def test_the_empty_built_live_model_computes_what_transformers_loads(
    mixed_pool: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    pool_file, _ = mixed_pool
    out = stream_merge(plan_for(load_pool(pool_file), MergeSpec()), MergeSpec(), MergePoint(WEIGHTS), tmp_path / "out")
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    live, _ = live_merge(pool_file, MergeSpec(), "host")
    assert loaded.dtype == live.dtype == torch.bfloat16
    assert set(loaded.state_dict()) == set(live.state_dict())
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, live.state_dict()[key]), key
    for (name, buffer), (_, other) in zip(sorted(loaded.named_buffers()), sorted(live.named_buffers()), strict=True):
        torch.testing.assert_close(buffer, other, msg=name)  # non-persistent buffers (rotary) built, not left empty
    ids = torch.tensor([[1, 5, 9, 43, 2]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, live(ids).logits)


def test_auto_picks_host_when_the_pool_fits_and_disk_when_it_does_not(
    mixed_pool: tuple[Path, dict[str, torch.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from evaluators.pool import tiers

    plan = plan_for(load_pool(mixed_pool[0]), MergeSpec())
    size = tiers.pool_bytes(plan)
    cpu = torch.device("cpu")
    monkeypatch.setattr(tiers, "available_host_bytes", lambda: 10 * size)
    assert choose_tier("auto", plan, cpu).tier == "host"
    monkeypatch.setattr(tiers, "available_host_bytes", lambda: size)
    chosen = choose_tier("auto", plan, cpu)
    assert (
        chosen.tier == "disk" and "exceed" in chosen.reason and f"{tiers.size_text(size)} of sources" in chosen.reason
    )
    assert choose_tier("device", plan, cpu).tier == "device"  # an explicit tier is kept


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    from evaluators.pool.tiers import available_host_bytes

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    assert available_host_bytes(meminfo) == 20000000 * 1024
    meminfo.write_text("MemTotal:       24000000 kB\n")
    assert available_host_bytes(meminfo) is None


def test_pool_sizes_read_in_the_unit_that_fits() -> None:
    from evaluators.pool.tiers import size_text

    assert size_text(5_400_000) == "5.4 MB"  # the toy pool: not 0.01 GB
    assert size_text(14_960_000_000) == "14.96 GB"
