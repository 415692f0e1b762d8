"""The merge engine on real model directories: every member kind, streaming vs resident, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig

from evaluators.merge import MergeSpec
from evaluators.merge.engine import plan_for, stream_merge
from evaluators.merge.inspect import inspect_members
from evaluators.merge.point import MergePoint
from evaluators.pool import load_pool
from optimizer.cli import main
from tests.helpers import live_merger, resident_state, tiny_llama, two_lora_pool, write_pool


def merged(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model.safetensors")


def test_streaming_sharded_output_matches_formula_resident_and_loads(tiny_pool: Path, tmp_path: Path) -> None:
    pool_file = tiny_pool / "pool" / "checkpoints.yaml"
    weights = {"add": 0.2, "reverse": 0.3, "sort": 0.5}
    spec = MergeSpec()
    out = stream_merge(
        plan_for(load_pool(pool_file), spec), spec, MergePoint(weights), tmp_path / "out", max_shard_bytes=100_000
    )
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1, "expected several shards"
    model = AutoModelForCausalLM.from_pretrained(out)
    files = {n: load_file(tiny_pool / "pool" / n / "model.safetensors") for n in weights}
    resident = resident_state(pool_file, spec, weights)
    for key, value in model.state_dict().items():
        expected = sum(w * files[n][key].double() for n, w in weights.items())
        torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(resident[key], value, rtol=1e-6, atol=1e-6)
    # the sharded output is itself a valid full-checkpoint member
    again = write_pool(tmp_path, f"members:\n  - {{name: m, path: {out}}}\n")
    single = stream_merge(plan_for(load_pool(again), spec), spec, MergePoint({"m": 1.0}), tmp_path / "again")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in merged(single).items())
    assert (out / "tokenizer.json").is_file() and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_finetune_members_and_task_arithmetic(tmp_path: Path) -> None:
    base, ft1, ft2 = (tiny_llama(tmp_path / n, s) for n, s in (("base", 0), ("ft1", 1), ("ft2", 2)))
    pool_file = write_pool(
        tmp_path,
        f"bases: {{b: {{path: {base}}}}}\nmembers:\n  - {{name: f1, kind: finetune, path: {ft1}, base: b}}\n"
        f"  - {{name: f2, kind: finetune, path: {ft2}, base: b}}\n",
    )
    spec = MergeSpec(method="task_arithmetic", scale=0.8)
    out = stream_merge(
        plan_for(load_pool(pool_file), spec), spec, MergePoint({"f1": 0.6, "f2": -0.3}), tmp_path / "out"
    )
    b, t1, t2 = (load_file(d / "model.safetensors") for d in (base, ft1, ft2))
    got = merged(out)
    for key in b:
        expected = b[key] + 0.8 * (0.6 * (t1[key] - b[key]) - 0.3 * (t2[key] - b[key]))
        torch.testing.assert_close(got[key], expected, rtol=1e-5, atol=1e-6)
    resident = resident_state(pool_file, spec, {"f1": 0.6, "f2": -0.3})
    assert all(torch.allclose(resident[k], got[k], atol=1e-6) for k in got)


def test_transfer_pads_the_larger_vocabulary_and_keeps_the_target_config(tmp_path: Path) -> None:
    source_base = tiny_llama(tmp_path / "v1", 0, vocab=40)
    source_ft = tiny_llama(tmp_path / "v1-ft", 1, vocab=44)  # fine-tune added 4 tokens
    target = tiny_llama(tmp_path / "v2", 2, vocab=40, positions=96)
    pool_file = write_pool(
        tmp_path,
        f"bases: {{v2: {{path: {target}}}}}\nmembers:\n  - {{name: it, kind: transfer, source_finetune: {source_ft}, "
        f"source_base: {source_base}, target_base: v2}}\n",
    )
    spec = MergeSpec()
    out = stream_merge(plan_for(load_pool(pool_file), spec), spec, MergePoint({"it": 1.0}), tmp_path / "out")
    sb, sft, tb = (load_file(d / "model.safetensors") for d in (source_base, source_ft, target))
    got = merged(out)

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, torch.zeros(44 - t.shape[0], *t.shape[1:])]) if t.shape[0] == 40 and t.dim() == 2 else t

    for key in tb:
        torch.testing.assert_close(got[key], pad(tb[key]) + sft[key] - pad(sb[key]), rtol=1e-5, atol=1e-6)
    assert got["model.embed_tokens.weight"].shape == (44, 32)
    torch.testing.assert_close(got["lm_head.weight"][40:], sft["lm_head.weight"][40:])
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 44 and config["max_position_embeddings"] == 96
    signal = inspect_members(plan_for(load_pool(pool_file), spec))[0].transfer
    assert signal is not None and -1.0 <= signal.cosine <= 1.0 and signal.relative_distance > 0


def test_tied_weights_stay_tied(tmp_path: Path) -> None:
    a, b = tiny_llama(tmp_path / "a", 0, tied=True), tiny_llama(tmp_path / "b", 1, tied=True)
    assert "lm_head.weight" not in load_file(a / "model.safetensors")
    pool_file = write_pool(tmp_path, f"members:\n  - {{name: a, path: {a}}}\n  - {{name: b, path: {b}}}\n")
    spec = MergeSpec()
    out = stream_merge(plan_for(load_pool(pool_file), spec), spec, MergePoint({"a": 0.5, "b": 0.5}), tmp_path / "out")
    assert "lm_head.weight" not in merged(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    state = resident_state(pool_file, spec, {"a": 0.5, "b": 0.5})
    ea, eb = (load_file(d / "model.safetensors")["model.embed_tokens.weight"] for d in (a, b))
    torch.testing.assert_close(state["lm_head.weight"], 0.5 * ea + 0.5 * eb)


def test_lora_members_against_peft(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    _, pool_file, adapters = two_lora_pool(tmp_path)
    spec = MergeSpec()
    single = merged(stream_merge(plan_for(load_pool(pool_file), spec), spec, MergePoint({"l1": 1.0}), tmp_path / "o1"))
    for key, value in adapters[0].items():
        torch.testing.assert_close(single[key], value, rtol=1e-5, atol=1e-6)
    mix = merged(
        stream_merge(plan_for(load_pool(pool_file), spec), spec, MergePoint({"l1": 0.5, "l2": 0.5}), tmp_path / "o2")
    )
    for key, value in adapters[0].items():  # exact: the average of the two merged models
        torch.testing.assert_close(mix[key], 0.5 * value + 0.5 * adapters[1][key], rtol=1e-5, atol=1e-6)
    resident = resident_state(pool_file, spec, {"l1": 0.5, "l2": 0.5})
    assert all(torch.allclose(resident[k], mix[k], atol=1e-6) for k in mix)
    factorwise = MergeSpec(method="lora_factorwise")
    fw = merged(
        stream_merge(
            plan_for(load_pool(pool_file), factorwise), factorwise, MergePoint({"l1": 0.5, "l2": 0.5}), tmp_path / "o3"
        )
    )
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(fw[key], mix[key], atol=1e-4)
    assert torch.equal(fw["model.layers.0.mlp.up_proj.weight"], mix["model.layers.0.mlp.up_proj.weight"])


def test_pool_check_distances_match_an_independent_computation(
    tiny_pool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool_file = tiny_pool / "pool" / "checkpoints.yaml"
    reports = inspect_members(plan_for(load_pool(pool_file), MergeSpec(method="task_arithmetic")))
    base = load_file(tiny_pool / "pool" / "base" / "model.safetensors")
    for report in reports:
        member = load_file(tiny_pool / "pool" / report.name / "model.safetensors")
        num = sum(float(((member[k].double() - base[k].double()) ** 2).sum()) for k in base)
        den = sum(float((base[k].double() ** 2).sum()) for k in base)
        assert report.distance == pytest.approx((num / den) ** 0.5, rel=1e-9)
        assert report.kind == "checkpoint" and report.dtype == "float32" and report.transfer is None
    assert main(["pool", "check", str(pool_file)]) == 0
    out = capsys.readouterr().out
    assert "merge base toy-base" in out and all(r.name in out for r in reports)


def test_grouped_weights_and_knobs_apply_per_tensor_in_both_modes(tiny_pool: Path, tmp_path: Path) -> None:
    pool_file = tiny_pool / "pool" / "checkpoints.yaml"
    spec = MergeSpec(method="task_arithmetic")
    groups = {"attn": r"self_attn\."}
    point = MergePoint(weights={"add": 1.0, "sort": 0.5}, groups={"attn": {"reverse": -0.5}}, knobs={"scale": 0.8})
    merger = live_merger(pool_file, spec, groups)
    model = AutoModelForCausalLM.from_config(LlamaConfig.from_pretrained(merger.plan.model_dir()))
    merger.merge_into(point, dict(model.named_parameters()))
    out = merged(stream_merge(merger.plan, spec, point, tmp_path / "out", groups=groups))
    files = {n: load_file(tiny_pool / "pool" / n / "model.safetensors") for n in ["base", "add", "reverse", "sort"]}
    state = model.state_dict()
    attn = [k for k in out if "self_attn." in k]
    assert attn and len(attn) < len(out)
    for key in out:
        base = files["base"][key].float()
        if key in attn:
            expected = base + 0.8 * (-0.5) * (files["reverse"][key].float() - base)
        else:
            expected = base + 0.8 * ((files["add"][key].float() - base) + 0.5 * (files["sort"][key].float() - base))
        torch.testing.assert_close(out[key].float(), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(state[key].float(), out[key].float())


def test_a_group_that_matches_no_tensor_is_refused(tiny_pool: Path) -> None:
    from evaluators.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"weight group\(s\) \['vision'\] match no tensor"):
        live_merger(tiny_pool / "pool" / "checkpoints.yaml", MergeSpec(), {"vision": "vision_tower"})
