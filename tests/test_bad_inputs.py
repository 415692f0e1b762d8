"""The bad-input catalogue: every way of handing mergefront something it cannot use, one case each.

A case builds one bad input from pristine copies of the tiny pool and an experiment on it (or of a
finished run), runs the command line in-process, and names a piece of the expected message. One
checker holds every case to the same contract:

- exit code 2, and stderr is exactly one line starting ``mergefront: error:`` that names the input
  and says how to fix it (the case's expected text);
- no traceback anywhere, nothing on stdout;
- no partial output: the case's whole directory (pool, experiment, run copy, runs and output
  directories) is the same afterwards, so nothing was created, removed or rewritten;
- the search never starts (``Search.run`` fails the test if it is reached).

Add a case to ``CASES``; keep its id readable (``<where>-<what is wrong>``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from optimizer.cli import main
from tests.helpers import free_port, write_experiment


@dataclass(frozen=True)
class Env:
    """One case's private directory (also the working directory while the command runs)."""

    tmp: Path
    run: Path | None  # a private copy of a finished 7-trial run, for cases that need one

    @property
    def pool(self) -> Path:
        """The tiny pool's directory: checkpoints.yaml, base/ and the members add/ reverse/ sort/ shift/."""
        return self.tmp / "tiny" / "pool"

    @property
    def pool_file(self) -> Path:
        return self.pool / "checkpoints.yaml"

    @property
    def tasks(self) -> Path:
        return self.tmp / "tiny" / "tasks"

    @property
    def exp(self) -> Path:
        """An experiment on the pool: perplexity on toy_add (min), acc on toy_reverse (max), 6 trials."""
        return self.tmp / "exp.yaml"

    @property
    def runs(self) -> Path:
        return self.tmp / "runs"

    def fill(self, text: str) -> str:
        return text.format(tmp=self.tmp, pool=self.pool, tasks=self.tasks, exp=self.exp, runs=self.runs, run=self.run)


Build = Callable[[Env], list[str]]


@dataclass(frozen=True)
class Case:
    build: Build  # makes the bad input, returns the command line
    expected: tuple[str, ...]  # each piece must be in the error line ({tmp}, {pool}, {run}, ... are filled in)
    needs_run: bool = False


def case(name: str, build: Build, *expected: str, needs_run: bool = False, marks=()):  # type: ignore[no-untyped-def]
    return pytest.param(Case(build, expected, needs_run), id=name, marks=marks)


# ---------------------------------------------------------------------------------------------
# Building blocks


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def search(env: Env, *extra: str) -> list[str]:
    return ["search", str(env.exp), "--runs-dir", str(env.runs), "--no-progress", *extra]


def command(*argv: str) -> Build:
    """A command line as written, with {tmp}, {pool}, {run}, ... filled in."""
    return lambda env: [env.fill(a) for a in argv]


def searching(*extra: str) -> Build:
    """Search the pristine experiment with these options."""
    return lambda env: search(env, *(env.fill(a) for a in extra))


def pool_check(env: Env, *extra: str) -> list[str]:
    return ["pool", "check", str(env.pool_file), *extra]


def with_pool(text: str) -> Build:
    """Search with this checkpoints.yaml."""

    def build(env: Env) -> list[str]:
        env.pool_file.write_text(text)
        return search(env)

    return build


def with_experiment(lines: str) -> Build:
    """Search with these top-level lines in the experiment, each replacing the key's own line(s) if it has one."""

    def build(env: Env) -> list[str]:
        text = env.exp.read_text()
        for line in lines.splitlines():
            key = line.split(":", 1)[0]
            text = (
                "\n".join(
                    row
                    for row in text.splitlines()
                    if not row.startswith(f"{key}:") and not (key == "objectives" and row.startswith("  - "))
                )
                + "\n"
            )
        env.exp.write_text(text + lines + "\n")
        return search(env)

    return build


def experiment_edit(old: str, new: str) -> Build:
    def build(env: Env) -> list[str]:
        edit(env.exp, old, env.fill(new))
        return search(env)

    return build


def checking(pool_yaml: str, *extra: str) -> Build:
    """``pool check`` of this checkpoints.yaml."""

    def build(env: Env) -> list[str]:
        env.pool_file.write_text(pool_yaml)
        return pool_check(env, *extra)

    return build


def tensors(env: Env, member: str) -> dict[str, torch.Tensor]:
    return load_file(env.pool / member / "model.safetensors")


def save(env: Env, member: str, values: dict[str, torch.Tensor]) -> None:
    save_file(values, env.pool / member / "model.safetensors", metadata={"format": "pt"})


def weights_file(env: Env, member: str = "reverse") -> Path:
    return env.pool / member / "model.safetensors"


# ---------------------------------------------------------------------------------------------
# Checkpoint files (each build returns the command that reads them)


def no_weights(env: Env) -> list[str]:
    weights_file(env).unlink()
    return search(env)


def pickle_only(env: Env) -> list[str]:
    torch.save(tensors(env, "reverse"), env.pool / "reverse" / "pytorch_model.bin")
    weights_file(env).unlink()
    return search(env)


def missing_shard(env: Env) -> list[str]:
    member = env.pool / "reverse"
    weights_file(env).rename(member / "model-00001-of-00002.safetensors")
    keys = sorted(load_file(member / "model-00001-of-00002.safetensors"))
    index = {k: "model-00001-of-00002.safetensors" for k in keys}
    index[keys[-1]] = "model-00002-of-00002.safetensors"
    (member / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    return pool_check(env)


def truncated_header(env: Env) -> list[str]:
    path = weights_file(env)
    path.write_bytes(path.read_bytes()[:100])
    return search(env)


def header_not_json(env: Env) -> list[str]:
    path = weights_file(env)
    data = path.read_bytes()
    path.write_bytes(data[:8] + b"{not json" + data[17:])
    return pool_check(env)


def truncated_data(env: Env) -> list[str]:
    path = weights_file(env)
    path.write_bytes(path.read_bytes()[:-1000])
    return search(env)


def shape_mismatch(env: Env) -> list[str]:
    values = tensors(env, "reverse")
    key = "model.layers.0.mlp.up_proj.weight"
    values[key] = torch.zeros(values[key].shape[0] + 1, values[key].shape[1])
    save(env, "reverse", values)
    return search(env)


def other_architecture(env: Env) -> list[str]:
    path = env.pool / "reverse" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "model_type": "mistral", "architectures": ["MistralForCausalLM"]}))
    return pool_check(env)


def missing_config(env: Env) -> list[str]:
    (env.pool / "reverse" / "config.json").unlink()
    return search(env)


def model_type_everywhere(model_type: str | None, then: Build = search) -> Build:
    """Every config.json of the pool with this model_type (None: without one), so that the members still agree;
    then ``then``'s command (a search by default)."""

    def build(env: Env) -> list[str]:
        for path in env.pool.glob("*/config.json"):
            config = json.loads(path.read_text())
            del config["model_type"]
            path.write_text(json.dumps(config if model_type is None else {**config, "model_type": model_type}))
        return then(env)

    return build


def merging_add(env: Env) -> list[str]:
    return ["merge", "--pool", str(env.pool_file), "--weights", "add=1", "--out", str(env.tmp / "out")]


def stored_as(dtype: torch.dtype, then: Build) -> Build:
    """The member's floating weights stored in ``dtype`` (scaled, so integer copies are not all zero)."""

    def build(env: Env) -> list[str]:
        values = tensors(env, "reverse")
        save(env, "reverse", {k: (v * 1000).to(dtype) if v.is_floating_point() else v for k, v in values.items()})
        return then(env)

    return build


def quantized(env: Env) -> list[str]:
    path = env.pool / "reverse" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "quantization_config": {"quant_method": "gptq", "bits": 4}}))
    return pool_check(env)


def adapter_for_another_base(env: Env) -> list[str]:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    wide = LlamaConfig(
        vocab_size=40,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(wide).save_pretrained(env.tmp / "wide")
    model = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(env.tmp / "wide"), peft.LoraConfig(r=2, target_modules=["q_proj"])
    )
    model.save_pretrained(env.pool / "lora")
    shutil.rmtree(env.tmp / "wide")
    env.pool_file.write_text("bases: {b: {path: base}}\nmembers:\n  - {name: l, kind: lora, path: lora, base: b}\n")
    return pool_check(env)


# ---------------------------------------------------------------------------------------------
# Task files and objectives


def task_file(env: Env, task: str = "toy_add") -> Path:
    return env.tasks / f"{task}.yaml"


def malformed_task(env: Env) -> list[str]:
    task_file(env).write_text(task_file(env).read_text() + "metric_list: [\n")
    return search(env)


def function_tag(env: Env) -> list[str]:
    edit(task_file(env), 'doc_to_text: "{{prompt}}"', "doc_to_text: !function utils.prompt")
    return search(env)


def missing_include(env: Env) -> list[str]:
    (env.tasks / "toy_extra.yaml").write_text("include: nowhere.yaml\ntask: toy_extra\n")
    return search(env)


def default_metrics_only(env: Env) -> list[str]:
    """A task without metric_list gets lm-eval's defaults for its output_type (loglikelihood: perplexity, acc)."""
    text = task_file(env).read_text()
    plain = text.split("metric_list:")[0].replace("task: toy_add", "task: toy_plain")
    task_file(env, "toy_plain").write_text(plain)
    edit(env.exp, "{task: toy_add, metric: perplexity,", "{task: toy_plain, metric: exact_match,")
    return search(env)


TOY_DATA = "dataset_path: json\ndataset_kwargs:\n  data_files:\n    search: data/add_search.jsonl\n"


def dataset_path(value: str, folder: bool = False) -> Build:
    """toy_add reads its data from ``dataset_path: value`` (with ``folder``: an empty folder of that name beside it)."""

    def build(env: Env) -> list[str]:
        edit(task_file(env), TOY_DATA, f"dataset_path: {value}\n")
        if folder:
            (env.tasks / value).mkdir()
        return search(env)

    return build


def data_file_missing(env: Env) -> list[str]:
    (env.tasks / "data" / "add_search.jsonl").unlink()
    return search(env)


def builtin_task_not_cached(env: Env) -> list[str]:
    """An experiment without tasks_dir on lm-eval's arc_easy, whose dataset is not in the (empty) local cache."""
    env.exp.write_text(f"name: tiny\npool: {env.pool_file}\nbuiltin_tasks: true\nobjectives: [arc_easy]\n")
    return search(env)


def perplexity_without_higher_is_better(env: Env) -> list[str]:
    """toy_add's metric_list leaves higher_is_better out for perplexity, so lm-eval's default for the metric applies."""
    edit(task_file(env), "aggregation: perplexity\n    higher_is_better: false\n", "aggregation: perplexity\n")
    edit(env.exp, "metric: perplexity, direction: minimize", "metric: perplexity, direction: maximize")
    return search(env)


def metric_of_unknown_direction(env: Env) -> list[str]:
    """A metric that neither the task's metric_list nor lm-eval's registry ranks, with no direction in the objective."""
    task_file(env).write_text(task_file(env).read_text() + "  - metric: my_score\n    aggregation: mean\n")
    edit(env.exp, "{task: toy_add, metric: perplexity, direction: minimize}", "{task: toy_add, metric: my_score}")
    return search(env)


# ---------------------------------------------------------------------------------------------
# Runs (export, front, plot, report, resume, dashboard read a finished run)


def failed_trial(env: Env) -> list[str]:
    from optimizer.store.rows import TrialRecord, TrialSource
    from optimizer.store.trials import TRIALS, TrialStore, read_trials

    assert env.run is not None
    columns = read_trials(env.run, TRIALS).columns
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    TrialStore(env.run, columns).append(
        TrialRecord.failure("boom", trial=99, source=TrialSource.sampler(), weights={}, started_at=now, finished_at=now)
    )
    return ["export", str(env.run), "--trial", "99", "--out", str(env.tmp / "out")]


def pool_changed(env: Env) -> list[str]:
    assert env.run is not None
    meta = json.loads((env.run / "run.json").read_text())
    meta["fingerprint"]["members"]["add"] = "0" * 32  # as if add's files had changed since the run
    (env.run / "run.json").write_text(json.dumps(meta))
    return ["export", str(env.run), "--trial", "0", "--out", str(env.tmp / "out")]


def run_json(text: str, argv: tuple[str, ...]) -> Build:
    """The run's run.json replaced by ``text`` (a hand edit gone wrong), then ``argv`` on the run."""

    def build(env: Env) -> list[str]:
        assert env.run is not None
        (env.run / "run.json").write_text(text)
        return [argv[0], str(env.run), *argv[1:]]

    return build


def pool_moved(env: Env) -> list[str]:
    assert env.run is not None
    meta = json.loads((env.run / "run.json").read_text())
    meta["experiment"]["pool"] = "../gone/checkpoints.yaml"  # stored relative to the run, and no longer there
    (env.run / "run.json").write_text(json.dumps(meta))
    return ["resume", str(env.run), "--no-progress"]


def another_pool(env: Env) -> list[str]:
    other = env.pool / "other.yaml"  # the run's member names, but add and sort swapped
    other.write_text(
        "members:\n  - {name: add, path: sort}\n  - {name: reverse, path: reverse}\n  - {name: sort, path: add}\n"
        "  - {name: shift, path: shift}\n"
    )
    return ["resume", str(env.run), "--pool", str(other), "--no-progress"]


def existing_out(env: Env) -> list[str]:
    (env.tmp / "out").mkdir()
    (env.tmp / "out" / "keep.txt").write_text("mine")
    return ["export", str(env.run), "--trial", "0", "--out", str(env.tmp / "out")]


def merging(weights: str) -> Build:
    """``merge`` of the pristine pool with these --weights."""
    return command("merge", "--pool", "{pool}/checkpoints.yaml", "--weights", weights, "--out", "{tmp}/out")


def a_file(env: Env) -> Path:
    (env.tmp / "a-file").write_text("x")
    return env.tmp / "a-file"


def lora_pool(env: Env) -> Path:
    pytest.importorskip("peft")
    from tests.helpers import two_lora_pool

    _, pool_file, _ = two_lora_pool(env.tmp / "lora")
    return pool_file


def ranks_differ(then: Callable[[Env, Path], list[str]]) -> Build:
    """The two-adapter pool with a third adapter of rank 8 on o_proj (the others: rank 4 on q_proj, v_proj)."""

    def build(env: Env) -> list[str]:
        import peft
        from transformers import AutoModelForCausalLM

        pool_file = lora_pool(env)
        base = AutoModelForCausalLM.from_pretrained(pool_file.parent / "base")
        config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], rank_pattern={"v_proj": 8})
        peft.get_peft_model(base, config).save_pretrained(pool_file.parent / "lora3")
        text = pool_file.read_text()
        pool_file.write_text(text + f"  - {{name: l3, kind: lora, path: {pool_file.parent / 'lora3'}, base: b}}\n")
        return then(env, pool_file)

    return build


FACTORWISE = (
    "merge method 'lora_factorwise' averages the adapters' factors, so every member must adapt the same modules"
)
RANK_8 = "has rank 8 and scale 1 in member 'l3' but rank 4 and scale 2 in member 'l1'"


def runs_dir_under_a_file(env: Env) -> list[str]:
    return ["search", str(env.exp), "--runs-dir", str(a_file(env) / "runs"), "--no-progress"]


def export_under_a_file(env: Env) -> list[str]:
    return ["export", str(env.run), "--trial", "0", "--out", str(a_file(env) / "out")]


def adapter_weights_off_one(env: Env) -> list[str]:
    return [
        "merge",
        "--pool",
        str(lora_pool(env)),
        "--weights",
        "l1=0.5,l2=0.7",
        "--no-normalize",  # normalized, they would sum to 1
        "--as-adapter",
        "--out",
        str(env.tmp / "out"),
    ]


def read_only_runs_dir(env: Env) -> list[str]:
    (env.tmp / "locked").mkdir()
    (env.tmp / "locked").chmod(0o555)
    return ["search", str(env.exp), "--runs-dir", str(env.tmp / "locked" / "runs"), "--no-progress"]


def run_dir_exists(env: Env) -> list[str]:
    (env.runs / "tiny").mkdir(parents=True)
    (env.runs / "tiny" / "keep").write_text("an earlier run's file")
    return search(env)


def empty_experiment(env: Env) -> list[str]:
    env.exp.write_text("")
    return search(env)


MEMBERS = "members:\n  - {name: add, path: add}\n  - {name: reverse, path: reverse}\n"
TRANSFER = "bases: {b: {path: base}}\nmembers:\n  - {name: t, kind: transfer, source_finetune: add, source_base: base, target_base: b, scale: high}\n"
RUN = "a run directory written by `mergefront search`"
WEIGHTS = "merge: argument --weights: "
CORRUPT = "the file is corrupt or truncated: copy it again or re-save the model"

CASES = [
    # --- checkpoints.yaml --------------------------------------------------------------------
    case(
        "pool-malformed-yaml",
        with_pool("members: [\n"),
        "{pool}/checkpoints.yaml: line 2, column 1: malformed YAML",
        "fix the syntax",
    ),
    case("pool-empty-file", with_pool(""), "{pool}/checkpoints.yaml: the file is empty; it needs at least: members"),
    case(
        "pool-top-level-list",
        with_pool("- add\n- reverse\n"),
        "checkpoints.yaml: the top level is a list, but it must be a mapping of keys",
    ),
    case(
        "pool-members-not-a-list", with_pool("members: add\n"), "checkpoints.yaml: members: expected a list, got 'add'"
    ),
    case(
        "pool-scale-not-a-number",
        with_pool(TRANSFER),
        "checkpoints.yaml: members[0].scale: expected a number, got 'high'",
    ),
    case(
        "pool-unknown-key",
        with_pool("members:\n  - {name: add, pth: add}\n"),
        "checkpoints.yaml: members[0]: unknown key 'pth' (did you mean 'path'?)",
    ),
    case(
        "pool-unknown-kind",
        with_pool("members:\n  - {name: add, kind: adapter, path: add}\n"),
        "checkpoints.yaml: members[0]: unknown member kind; use one of: checkpoint, base, finetune, transfer, lora",
    ),
    case(
        "pool-no-members",
        with_pool("members: []\n"),
        "members: the pool has no members; list at least one checkpoint under 'members'",
    ),
    case(
        "pool-duplicate-member",
        with_pool("members:\n  - {name: add, path: add}\n  - {name: add, path: sort}\n"),
        "checkpoints.yaml: members: member name 'add' is used twice; give each member its own name",
    ),
    case(
        "pool-bad-member-name",
        with_pool("members:\n  - {name: ../up, path: add}\n"),
        "checkpoints.yaml: members[0].name: '../up' is not a valid name; use 1 to 64 letters, digits",
    ),
    case(
        "pool-undeclared-base",
        with_pool("members:\n  - {name: x, kind: finetune, path: add, base: b1}\n"),
        "checkpoints.yaml: member 'x' refers to base 'b1', which is not under 'bases' (declared: none declared); add it there",
    ),
    case(
        "pool-unknown-tokenizer",
        with_pool(f"tokenizer: nobody\n{MEMBERS}"),
        "checkpoints.yaml: tokenizer 'nobody' is neither a member nor a base",
        "name one of: add, reverse",
    ),
    case(
        "pool-member-directory-missing",
        with_pool("members:\n  - {name: add, path: nowhere}\n"),
        "checkpoints.yaml: members[0].path: 'nowhere' is neither a directory (resolved to {pool}/nowhere) nor a model "
        "in the local Hugging Face cache",
        "fix the path, which is relative to the YAML file, or fetch the model with `hf download nowhere` or "
        "--allow-download",
    ),
    case(
        "pool-member-path-is-a-file",
        with_pool("members:\n  - {name: add, path: add/config.json}\n"),
        "members[0].path: 'add/config.json' is a file, not a directory (resolved to {pool}/add/config.json); point it at a directory",
    ),
    case(
        "pool-lora-without-adapter-config",
        with_pool("bases: {b: {path: base}}\nmembers:\n  - {name: x, kind: lora, path: add, base: b}\n"),
        "member 'x': {pool}/add/adapter_config.json is missing; is this a PEFT LoRA adapter?",
    ),
    case(
        "pool-method-needs-a-base",
        checking(MEMBERS, "--method", "task_arithmetic"),
        "merge method 'task_arithmetic' needs a merge base θ₀, but pool 'pool' has no entry under 'bases'; declare the base under 'bases'",
    ),
    case(
        "pool-check-unknown-method",
        command("pool", "check", "{pool}/checkpoints.yaml", "--method", "della"),
        "--method: unknown merge method 'della'; available: dare_linear, dare_ties, linear",
    ),
    # --- checkpoint files (reverse is the bad member) ----------------------------------------
    case(
        "checkpoint-no-weights",
        no_weights,
        "member 'reverse': no model.safetensors or model.safetensors.index.json in {pool}/reverse; save the model with save_pretrained",
    ),
    case(
        "checkpoint-pickle-only",
        pickle_only,
        "member 'reverse': {pool}/reverse holds only pickle weights (pytorch_model.bin)",
        "convert them to safetensors",
    ),
    case(
        "checkpoint-index-names-missing-shard",
        missing_shard,
        "member 'reverse': shard model-00002-of-00002.safetensors listed in model.safetensors.index.json is missing from {pool}/reverse",
        "re-save the model",
    ),
    case(
        "checkpoint-truncated-header",
        truncated_header,
        "member 'reverse': {pool}/reverse/model.safetensors declares a",
        CORRUPT,
    ),
    case(
        "checkpoint-header-not-json",
        header_not_json,
        "{pool}/reverse/model.safetensors has a header that is not valid JSON",
        CORRUPT,
    ),
    case(
        "checkpoint-truncated-data",
        truncated_data,
        "{pool}/reverse/model.safetensors has data for",
        "outside the file or of the wrong size",
        CORRUPT,
    ),
    case(
        "checkpoint-shape-mismatch",
        shape_mismatch,
        "tensor 'model.layers.0.mlp.up_proj.weight' has shape [129, 64] in 'reverse' but [128, 64] in 'add'; members must share one",
    ),
    case(
        "checkpoint-other-architecture",
        other_architecture,
        "'reverse' is a mistral:MistralForCausalLM model but 'add' is llama:LlamaForCausalLM; a pool holds one architecture",
    ),
    case(
        "checkpoint-config-missing",
        missing_config,
        "member 'reverse': {pool}/reverse/config.json is missing; a model directory needs its config.json",
    ),
    case(
        "checkpoint-integer-weights",
        stored_as(torch.int64, search),
        "'reverse': tensor 'lm_head.weight' is int64 in {pool}/reverse but float32 in 'add'",
        "save 'reverse' with floating-point weights",
    ),
    case(
        "checkpoint-float8-weights",
        stored_as(torch.float8_e4m3fn, pool_check),
        "'reverse': tensor 'lm_head.weight' is stored as float8_e4m3fn in {pool}/reverse, which mergefront cannot interpolate",
        "dequantize the checkpoint",
    ),
    case(
        "checkpoint-quantized",
        quantized,
        "'reverse': {pool}/reverse is a quantized checkpoint (quantization_config: gptq)",
        "merge the unquantized",
    ),
    case(
        "checkpoint-adapter-for-another-base",
        adapter_for_another_base,
        "member 'l': factors",
        "the adapter was trained on another base",
    ),
    case(
        "checkpoint-config-without-model-type",
        model_type_everywhere(None),
        "'add': {pool}/add/config.json has no model_type, so transformers cannot tell which model to build",
        'add "model_type": "llama" (the type of its architecture LlamaForCausalLM)',
    ),
    case(
        "merge-config-without-model-type",
        model_type_everywhere(None, merging_add),
        "'add': {pool}/add/config.json has no model_type, so transformers cannot tell which model to build",
    ),
    case(
        "checkpoint-unknown-model-type",
        model_type_everywhere("lama"),
        "'add': {pool}/add/config.json has model_type 'lama', which transformers",
        "does not know (did you mean 'llama'?)",
        'set "model_type": "llama" (the type of its architecture LlamaForCausalLM)',
    ),
    # --- experiment files ----------------------------------------------------------------------
    case(
        "experiment-file-missing",
        command("search", "{tmp}/nowhere.yaml"),
        "{tmp}/nowhere.yaml: file not found; check the path",
    ),
    case(
        "experiment-is-a-directory",
        command("search", "{tmp}/tiny"),
        "{tmp}/tiny is a directory, not a YAML file; name the file itself",
    ),
    case(
        "experiment-malformed-yaml",
        with_experiment("objectives: [\n"),
        "{exp}: line",
        "malformed YAML (expected the node content",
        "fix the syntax",
    ),
    case(
        "experiment-empty-file",
        empty_experiment,
        "{exp}: the file is empty; it needs at least: name, objectives",
    ),
    case(
        "experiment-pool-file-missing",
        experiment_edit("pool: ", "pool: {tmp}/missing.yaml #"),
        "{exp}: pool: file '{tmp}/missing.yaml' does not exist",
        "fix the path",
    ),
    case(
        "experiment-tasks-dir-missing",
        experiment_edit("tasks_dir: ", "tasks_dir: {tmp}/no-tasks #"),
        "{exp}: tasks_dir: directory '{tmp}/no-tasks' does not exist",
        "fix the path",
    ),
    case(
        "experiment-own-task-without-tasks-dir",
        experiment_edit("tasks_dir: ", "# tasks_dir: "),
        "{exp}: objectives[0]: task 'toy_add' has no task YAML and no tasks_dir is set; set tasks_dir to the folder "
        "with its task YAML, or builtin_tasks: true",
    ),
    case(
        "experiment-unknown-key",
        with_experiment("seeed: 1"),
        "{exp}: (top level): unknown key 'seeed' (did you mean 'seed'?)",
    ),
    case(
        "experiment-unknown-nested-key",
        with_experiment("workers: {cout: 2}"),
        "{exp}: workers: unknown key 'cout' (did you mean 'count'?)",
    ),
    case(
        "experiment-budget-not-a-mapping",
        with_experiment("budget: 6"),
        "{exp}: budget: expected a mapping of keys (key: value), got 6",
    ),
    case(
        "experiment-trials-not-a-number",
        with_experiment("budget: {trials: many}"),
        "{exp}: budget.trials: expected a whole number, got 'many'",
    ),
    case(
        "experiment-bad-run-name",
        experiment_edit("name: tiny", "name: ../tiny"),
        "{exp}: name: '../tiny' is not a valid name; use 1 to 64 letters",
    ),
    case(
        "experiment-no-objectives",
        with_experiment("objectives: []"),
        "{exp}: objectives: needs at least 1 item, got 0; add one",
    ),
    case(
        "experiment-unknown-sampler",
        with_experiment("sampler: {name: tpee}"),
        "{exp}: sampler.name: unknown sampler 'tpee' (did you mean 'tpe'?)",
    ),
    case(
        "experiment-unknown-merge-method",
        with_experiment("merge: {method: della}"),
        "{exp}: merge: unknown merge method 'della'; available:",
    ),
    case(
        "experiment-knob-of-another-method",
        with_experiment("merge: {method: linear, density: 0.5}"),
        "{exp}: merge: parameter 'density' does not apply to method 'linear' (its parameters: none)",
    ),
    case(
        "experiment-ties-with-drop",
        with_experiment("merge: {method: ties, drop: 0.2}"),
        "{exp}: merge: parameter 'drop' does not apply to method 'ties' (its parameters: density, lambda)",
    ),
    case(
        "experiment-zero-trials",
        with_experiment("budget: {trials: 0}"),
        "{exp}: budget.trials: Input should be greater than or equal to 1 (got 0)",
    ),
    case(
        "experiment-searched-knob-not-of-method",
        with_experiment("space: {knobs: {lambda: [0.5, 1.5]}}"),
        "{exp}: space.knobs: 'lambda' is not a parameter of merge method 'linear' (its parameters: none)",
    ),
    case(
        "experiment-searched-knob-out-of-range",
        with_experiment("merge: {method: ties}\nspace: {knobs: {density: [0.0, 0.5]}}"),
        "{exp}: space.knobs: parameter 'density' = 0.0 lies outside (0, 1]",
    ),
    case(
        "experiment-knob-searched-and-fixed",
        with_experiment("merge: {method: ties, lambda: 1.0}\nspace: {knobs: {lambda: [0.5, 1.5]}}"),
        "{exp}: space.knobs: 'lambda' is searched, so do not also fix it under merge",
    ),
    case(
        "experiment-slerp-on-four-members",
        with_experiment("merge: {method: slerp}\nspace: {knobs: {t: [0.0, 1.0]}}"),
        "{exp}: merge: merge method 'slerp' merges at most 2 members, but the search would weight all 4 of pool "
        "'toy'; search a pool of 2",
    ),
    case(
        "experiment-slerp-t-range-outside",
        with_experiment("merge: {method: slerp}\nspace: {knobs: {t: [0.0, 1.5]}}"),
        "{exp}: space.knobs: parameter 't' = 1.5 lies outside [0, 1]",
    ),
    case(
        "experiment-group-matches-nothing",
        with_experiment("space: {groups: {vision: vision_tower}}"),
        "{exp}: space.groups: weight group(s) ['vision'] match no tensor of the pool",
        "fix their patterns",
    ),
    case(
        "experiment-simplex-with-bounds",
        with_experiment("space: {kind: simplex, high: 2}"),
        "{exp}: space: 'low'/'high' apply to kind 'box' only",
    ),
    case(
        "experiment-weights-cannot-sum-to-one",
        with_experiment("space: {kind: box, low: 0.5, high: 1.0}"),
        "{exp}: space: the 4 weights of a linear merge must sum to 1, but each lies in [0.5, 1]",
        "choose low <= 0.25 <= high, or use kind: simplex",
    ),
    case(
        "experiment-lambda-under-both-spellings",
        with_experiment("merge: {method: task_arithmetic, scale: 0.5, lambda: 0.7}"),
        "{exp}: merge: parameter 'lambda' is given twice ('scale' and 'lambda'); give it once, as 'lambda' "
        "('scale' is its former name)",
    ),
    case(
        "experiment-searched-lambda-under-both-spellings",
        with_experiment("merge: {method: task_arithmetic}\nspace: {knobs: {scale: [0, 2], lambda: [0.5, 1]}}"),
        "{exp}: space.knobs: parameter 'lambda' is given twice ('scale' and 'lambda'); give it once, as 'lambda' "
        "('scale' is its former name)",
    ),
    case(
        "experiment-unknown-task",
        experiment_edit("task: toy_reverse,", "task: toy_revers,"),
        "{exp}: objectives[1]: task 'toy_revers' is not defined under {tasks} (did you mean 'toy_reverse'?)",
    ),
    case(
        "experiment-unknown-held-out-task",
        with_experiment("held_out: [toy_sortt_report]"),
        "{exp}: held_out[0]: task 'toy_sortt_report' is not defined",
    ),
    case(
        "experiment-unknown-metric",
        experiment_edit("metric: acc", "metric: accuracy"),
        "{exp}: objectives[1]: task 'toy_reverse' declares metrics ['acc', 'perplexity'], not 'accuracy'; pick one of those",
    ),
    case(
        "experiment-filter-missing-from-results",
        experiment_edit("metric: acc,", "metric: acc, filter: strict-match,"),
        "{exp}: objectives[1]: task 'toy_reverse' has no filter 'strict-match' (its filters: none)",
        "results would hold no 'acc,strict-match'; set 'filter' to one of those",
    ),
    case(
        "experiment-metric-missing-from-default-results",
        default_metrics_only,
        "{exp}: objectives[0]: task 'toy_plain' has no metric_list",
        "['perplexity', 'acc'], not 'exact_match'; pick one of those or add a metric_list",
    ),
    case(
        "experiment-duplicate-objective",
        with_experiment("held_out: [toy_reverse]\nobjectives: [toy_reverse]"),
        "{exp}: objective or held-out task 'toy_reverse/acc' appears twice; give one of them a distinct 'name'",
    ),
    case(
        "experiment-zero-screen",
        with_experiment("evaluation: {screen: 0}"),
        "{exp}: evaluation.screen: Input should be greater than or equal to 1",
    ),
    case(
        "experiment-negative-wall-time",
        with_experiment("budget: {wall_minutes: -1}"),
        "{exp}: budget.wall_minutes: Input should be greater than 0",
    ),
    case(
        "experiment-chat-template-missing",
        with_experiment("held_out: [{task: toy_sort_report, apply_chat_template: true}]"),
        "{exp}: toy_sort_report/acc sets apply_chat_template, but the tokenizer in",
        "has no chat template; drop the flag",
    ),
    case(
        "experiment-gen-kwargs-wrong-type",
        with_experiment("held_out: [{task: toy_sort_report, gen_kwargs: {until: [1, 2]}}]"),
        "{exp}: held_out[0].gen_kwargs.until: [1, 2] fits none of the allowed types (str, int, float, bool, list[str]); write one",
    ),
    case(
        "experiment-gpu-memory-above-one",
        with_experiment("workers: {vllm: {gpu_memory_utilization: 1.5}}"),
        "{exp}: workers.vllm.gpu_memory_utilization: Input should be less than or equal to 1 (got 1.5)",
    ),
    case(
        "experiment-unknown-backend",
        with_experiment("workers: {backend: vlm}"),
        "{exp}: workers: unknown model backend 'vlm' (did you mean 'vllm'?)",
    ),
    case(
        "experiment-vllm-not-installed",
        with_experiment("workers: {backend: vllm}"),
        "{exp}: workers.backend is vllm, but vLLM is not installed",
        "or set workers.backend: hf",
        marks=pytest.mark.skipif(find_spec("vllm") is not None, reason="vLLM is installed here"),
    ),
    case(
        "task-malformed-yaml",
        malformed_task,
        "{tasks}/toy_add.yaml: line",
        "malformed task YAML (expected the node content",
        "fix the syntax",
    ),
    case(
        "task-function-tag",
        function_tag,
        "{tasks}/toy_add.yaml: the tag !function runs code from the task file",
        "use a task without it",
    ),
    case(
        "task-include-missing",
        missing_include,
        "{tasks}/toy_extra.yaml: include 'nowhere.yaml' does not exist",
        "fix the path",
    ),
    case(
        "task-dataset-path-not-found",
        dataset_path("add_data"),
        "{exp}: objectives[0]: {tasks}/toy_add.yaml: dataset_path 'add_data' is neither a folder next to the task file "
        "nor a dataset in the local Hugging Face cache (",
        "fix the path (relative to the task file), or if it names a hub dataset, fetch it on a machine with network: "
        "mergefront tasks fetch {exp}",
    ),
    case(
        "task-data-file-missing",
        data_file_missing,
        "{exp}: objectives[0]: {tasks}/toy_add.yaml: datasets cannot load its json data files (",
        "fix dataset_kwargs.data_files (paths are relative to the task file)",
    ),
    case(
        "task-builtin-dataset-not-cached",
        builtin_task_not_cached,
        "{exp}: objectives[0]: task 'arc_easy' reads dataset 'allenai/ai2_arc' (config 'ARC-Easy'), which is not in "
        "the local Hugging Face cache",
        "runs are offline by default, so fill the cache once, on a machine with network: mergefront tasks fetch {exp}",
    ),
    case(
        "task-dataset-folder-without-data",
        dataset_path("add_data", folder=True),
        "{exp}: objectives[0]: {tasks}/toy_add.yaml: dataset_path {tasks}/add_data is a folder datasets cannot load (",
        "put the task's data files (json, jsonl, csv, parquet, ...) in it",
    ),
    case(
        "experiment-direction-contradicts-task",
        experiment_edit("perplexity, direction: minimize", "perplexity, direction: maximize"),
        "{exp}: objectives[0] (toy_add/perplexity): direction maximize contradicts task 'toy_add', where lm-eval ranks "
        "a lower 'perplexity' better (higher_is_better: false)",
        "set direction: minimize or leave it out, or fix higher_is_better in the task's metric_list",
    ),
    case(
        "experiment-direction-contradicts-lm-eval-default",
        perplexity_without_higher_is_better,
        "{exp}: objectives[0] (toy_add/perplexity): direction maximize contradicts task 'toy_add', where lm-eval ranks "
        "a lower 'perplexity' better (higher_is_better: false)",
    ),
    case(
        "experiment-direction-unknown",
        metric_of_unknown_direction,
        "{exp}: objectives[0] (toy_add/my_score): neither task 'toy_add' (no higher_is_better in its metric_list) nor "
        "lm-eval (no default for the metric) says whether a higher 'my_score' is better; set direction: maximize or minimize",
    ),
    # --- command-line arguments ----------------------------------------------------------------
    case(
        "search-unknown-device",
        searching("--device", "tpu"),
        "--workers/--device/--threads: device: 'tpu' is not a valid device; use 'cpu', 'cuda' or 'cuda:N'",
    ),
    case("search-zero-trials", searching("--trials", "0"), "argument --trials: must be at least 1, got 0"),
    case(
        "search-unknown-option",
        searching("--trails", "5"),
        "unrecognized arguments: --trails 5 (did you mean '--trials'?)",
    ),
    case(
        "search-name-outside-runs-dir",
        searching("--name", "../escape"),
        "--name: '../escape' is not a valid name",
    ),
    case(
        "search-runs-dir-under-a-file",
        runs_dir_under_a_file,
        "cannot create run directory {tmp}/a-file/runs/tiny (Not a directory); choose a writable --runs-dir",
    ),
    case(
        "search-runs-dir-read-only",
        read_only_runs_dir,
        "cannot create run directory {tmp}/locked/runs/tiny (Permission denied); choose a writable --runs-dir",
        marks=pytest.mark.skipif(
            os.geteuid() == 0,
            reason="root writes through a read-only mode; search-runs-dir-under-a-file covers the path",
        ),
    ),
    case(
        "search-run-directory-exists",
        run_dir_exists,
        "run directory {runs}/tiny already exists; pass --overwrite to replace it, --name to pick another",
    ),
    case(
        "search-warm-start-not-a-run",
        searching("--warm-start", "{tmp}/nowhere"),
        "{tmp}/nowhere/run.json does not exist; is {tmp}/nowhere " + RUN,
    ),
    case(
        "search-ray-address-unreachable",
        lambda env: search(env, "--ray-address", f"127.0.0.1:{free_port()}"),
        "--ray-address 127.0.0.1:",
        "nothing answers there",
        "start the cluster with `ray start --head` or fix the address",
    ),
    case(
        "search-in-process-with-ray-address",
        searching("--ray-address", "127.0.0.1:6379", "--in-process"),
        "argument --in-process: not allowed with argument --ray-address",
    ),
    case(
        "search-storage-not-a-url",
        searching("--storage", "postgres at db1"),
        "--storage 'postgres at db1' is not a database URL",
        "e.g. --storage postgresql://",
    ),
    case(
        "search-storage-unsupported",
        searching("--storage", "redis://127.0.0.1/0"),
        "unsupported database 'redis'",
        "use one of postgresql, sqlite, mysql",
    ),
    case(
        "search-storage-with-password",
        searching("--storage", "postgresql://mf:secret@127.0.0.1/mf"),
        "the URL holds a password, which run.json would record",
        "set PGPASSWORD or ~/.pgpass",
    ),
    case(
        "search-storage-unreachable",
        lambda env: search(env, "--storage", f"postgresql://mf@127.0.0.1:{free_port()}/mf"),
        "cannot open the study storage postgresql://mf@127.0.0.1:",
        "check that the server runs and the URL",
    ),
    case(
        "watch-experiment-missing",
        command("watch", "{tmp}/nowhere.yaml", "--once"),
        "{tmp}/nowhere.yaml: file not found; check the path",
    ),
    case(
        "watch-zero-interval",
        command("watch", "{exp}", "--interval", "0"),
        "argument --interval: must be at least 1, got 0",
    ),
    case(
        "join-missing-run",
        command("join", "{tmp}/nowhere"),
        "{tmp}/nowhere/run.json does not exist; is {tmp}/nowhere " + RUN,
    ),
    case(
        "resume-ray-address-unreachable",
        lambda env: ["resume", str(env.run), "--ray-address", f"127.0.0.1:{free_port()}", "--no-progress"],
        "--ray-address 127.0.0.1:",
        "nothing answers there",
        needs_run=True,
    ),
    case(
        "resume-missing-run",
        command("resume", "{tmp}/nowhere"),
        "{tmp}/nowhere/run.json does not exist; is {tmp}/nowhere " + RUN,
    ),
    case("resume-not-a-run", command("resume", "{pool}"), "{pool}/run.json does not exist; is {pool} " + RUN),
    case(
        "front-missing-run",
        command("front", "{tmp}/nowhere"),
        "{tmp}/nowhere/front.parquet does not exist; is {tmp}/nowhere " + RUN,
    ),
    case(
        "resume-trials-below-evaluated",
        command("resume", "{run}", "--trials", "3", "--no-progress"),
        "--trials 3: {run} has evaluated 7 trials already, and the budget counts them; give at least 7",
        needs_run=True,
    ),
    case(
        "dashboard-port-out-of-range",
        command("dashboard", "{run}", "--port", "99999"),
        "argument --port: must be at most 65535 (a TCP port), got 99999",
        needs_run=True,
    ),
    case(
        "export-run-json-not-json",
        run_json("{", ("export", "--trial", "0", "--out", "out")),
        "run.json is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); "
        "it is written by mergefront, not by hand: restore it from a copy of the run",
        needs_run=True,
    ),
    case(
        "resume-run-json-without-keys",
        run_json("{}", ("resume", "--no-progress")),
        "run.json lacks 'experiment'; it is written by mergefront, not by hand",
        needs_run=True,
    ),
    case(
        "front-sort-unknown-objective",
        command("front", "{run}", "--sort", "accuracy"),
        "cannot sort by 'accuracy': sort by an objective, a held-out task or 'trial' (toy_add/perplexity, toy_reverse/acc, trial)",
        needs_run=True,
    ),
    case(
        "plot-unsupported-suffix",
        command("plot", "{run}", "--out", "{tmp}/p.jpg"),
        "--out {tmp}/p.jpg: use a .png, .svg, .pdf or .html file name",
        needs_run=True,
    ),
    case(
        "plot-folder-missing",
        command("plot", "{run}", "--out", "{tmp}/no/p.png"),
        "--out {tmp}/no/p.png: folder {tmp}/no does not exist; create it or choose another --out",
        needs_run=True,
    ),
    case(
        "plot-unknown-objective",
        command("plot", "{run}", "--x", "toy_revers/acc", "--y", "toy_add/perplexity", "--out", "{tmp}/p.png"),
        "--x: 'toy_revers/acc' is neither an objective nor a held-out task of this run (did you mean "
        "'toy_reverse/acc'?); choices: toy_add/perplexity, toy_reverse/acc",
        needs_run=True,
    ),
    case(
        "plot-x-without-y",
        command("plot", "{run}", "--x", "toy_reverse/acc", "--out", "{tmp}/p.html"),
        "--x needs --y: name the measure of each axis; choices: toy_add/perplexity, toy_reverse/acc",
        needs_run=True,
    ),
    case(
        "plot-y-without-x",
        command("plot", "{run}", "--y", "toy_reverse/acc", "--out", "{tmp}/p.svg"),
        "--y needs --x",
        needs_run=True,
    ),
    case(
        "plot-one-measure-on-both-axes",
        command("plot", "{run}", "--x", "toy_reverse/acc", "--y", "toy_reverse/acc", "--out", "{tmp}/p.pdf"),
        "--x and --y are both 'toy_reverse/acc': plot two different measures; choices: toy_add/perplexity, "
        "toy_reverse/acc",
        needs_run=True,
    ),
    case(
        "report-unsupported-suffix",
        command("report", "{run}", "--out", "{tmp}/r.png"),
        "--out {tmp}/r.png: use a .html file name",
        needs_run=True,
    ),
    case("report-missing-run", command("report", "{tmp}/nowhere", "--out", "{tmp}/r.html"), "is {tmp}/nowhere " + RUN),
    case(
        "dashboard-missing-run",
        command("dashboard", "{tmp}/nowhere"),
        "{tmp}/nowhere/run.json does not exist; is {tmp}/nowhere " + RUN,
    ),
    case("dashboard-not-a-run", command("dashboard", "{pool}"), "{pool}/run.json does not exist; is {pool} " + RUN),
    case(
        "export-missing-run",
        command("export", "{tmp}/nowhere", "--trial", "0", "--out", "{tmp}/out"),
        "is {tmp}/nowhere " + RUN,
    ),
    case(
        "export-nonexistent-trial",
        command("export", "{run}", "--trial", "1000", "--out", "{tmp}/out"),
        "trial 1000 is not in {run} (trials 0..6); `mergefront front {run} --all` lists them",
        needs_run=True,
    ),
    case(
        "export-failed-trial", failed_trial, "trial 99 of {run} failed (boom); export a complete trial", needs_run=True
    ),
    case(
        "export-out-exists",
        existing_out,
        "{tmp}/out already exists; choose another --out or pass --force to replace it",
        needs_run=True,
    ),
    case(
        "export-out-under-a-file",
        export_under_a_file,
        "cannot write to {tmp}/a-file (Not a directory); choose a writable --out",
        needs_run=True,
    ),
    case(
        "export-pool-changed-since-run",
        pool_changed,
        "the pool's files changed since {run} started (changed: add); its trials no longer describe these files",
        needs_run=True,
    ),
    case(
        "resume-pool-file-moved",
        pool_moved,
        "{run}/run.json: pool: file '../gone/checkpoints.yaml' does not exist (resolved to {tmp}/gone/checkpoints.yaml)",
        "if the pool file moved, pass --pool PATH (its new place)",
        needs_run=True,
    ),
    case(
        "resume-pool-option-names-other-checkpoints",
        another_pool,
        "the pool's files changed since {run} started (changed: add, sort); start a new run",
        needs_run=True,
    ),
    case(
        "merge-unknown-member",
        command("merge", "--pool", "{pool}/checkpoints.yaml", "--weights", "ad=1", "--out", "{tmp}/out"),
        "--weights: ['ad'] are not members of {pool}/checkpoints.yaml (did you mean 'add'?) (members: add, reverse, sort, shift)",
    ),
    case(
        "merge-knob-of-another-method",
        command(
            "merge",
            "--pool",
            "{pool}/checkpoints.yaml",
            "--method",
            "linear",
            "--density",
            "0.5",
            "--weights",
            "add=1",
            "--out",
            "{tmp}/out",
        ),
        "--method and its parameters: parameter 'density' does not apply to method 'linear' (its parameters: none)",
    ),
    case(
        "merge-lambda-under-both-spellings",
        command(
            "merge",
            "--pool",
            "{pool}/checkpoints.yaml",
            "--method",
            "task_arithmetic",
            "--lambda",
            "0.7",
            "--scale",
            "0.5",
            "--weights",
            "add=1",
            "--out",
            "{tmp}/out",
        ),
        "argument --scale: not allowed with --lambda (both set 'lambda'; give --lambda once)",
    ),
    case(
        "merge-slerp-of-three-members",
        command(
            "merge",
            "--pool",
            "{pool}/checkpoints.yaml",
            "--method",
            "slerp",
            "--weights",
            "add=1,reverse=1,sort=1",
            "--out",
            "{tmp}/out",
        ),
        "merge method 'slerp' merges at most 2 members, but the weights give 3 a non-zero weight (add, reverse, sort); "
        "give weight to 2 of them",
    ),
    case(
        "merge-slerp-t-outside",
        command(
            "merge",
            "--pool",
            "{pool}/checkpoints.yaml",
            "--method",
            "slerp",
            "--weights",
            "add=1,reverse=1",
            "--t",
            "1.5",
            "--out",
            "{tmp}/out",
        ),
        "--method and its parameters: parameter 't' = 1.5 lies outside [0, 1]",
    ),
    case(
        "merge-malformed-weights",
        command("merge", "--pool", "{pool}/checkpoints.yaml", "--weights", "add", "--out", "{tmp}/out"),
        "'add' is not name=weight (e.g. --weights add=0.6,sort=0.4)",
    ),
    case(
        "merge-weight-nan",
        merging("add=nan,sort=0.5"),
        WEIGHTS + "add=nan is not a number; give each weight as a finite number",
    ),
    case(
        "merge-weight-infinite",
        merging("add=0.5,sort=-inf"),
        WEIGHTS + "sort=-inf is infinite; give each weight as a finite number",
    ),
    case(
        "merge-weight-beyond-float32",
        merging("add=1e39"),
        WEIGHTS
        + "add=1e39 is beyond float32's range (±3.4e+38), in which the merge is computed; give a smaller weight",
    ),
    case(
        "merge-weights-all-zero",
        merging("add=0,sort=0.0"),
        WEIGHTS
        + "every weight is 0, so the merge would hold none of the members; give at least one member a nonzero weight",
    ),
    case(
        "merge-normalized-weights-sum-to-zero",
        merging("add=1,sort=-1"),
        "--weights add=1 sort=-1 sum to 0, so normalizing them",
        "divides by 0",
        "pass --no-normalize to use them as given",
    ),
    case(
        "merge-normalized-weights-overflow-float32",
        merging("add=1,sort=-1,reverse=1e-45"),
        "sum to 1e-45, so normalizing them",
        "overflows float32",
    ),
    case(
        "merge-no-normalize-on-ties",
        command(
            "merge",
            "--pool",
            "{pool}/checkpoints.yaml",
            "--method",
            "ties",
            "--weights",
            "add=1",
            "--no-normalize",
            "--out",
            "{tmp}/out",
        ),
        "--no-normalize: multiplying every weight by one positive number does not change a ties merge",
        "leave the flag out",
    ),
    case(
        "merge-weight-given-twice",
        merging("add=0.5,add=0.7"),
        WEIGHTS + "'add' is given twice (0.5 and 0.7); give each member once",
    ),
    case(
        "merge-pool-missing",
        command("merge", "--pool", "{tmp}/nope.yaml", "--weights", "add=1", "--out", "{tmp}/out"),
        "{tmp}/nope.yaml: file not found",
    ),
    case(
        "merge-adapter-weights-do-not-sum-to-one",
        adapter_weights_off_one,
        "the weights sum to 1.200000, so the merge scales the base too",
        "export a full model instead",
    ),
    case(
        "merge-weight-rounds-to-zero-in-float32",
        command("merge", "--pool", "{pool}/checkpoints.yaml", "--weights", "add=1e-46", "--out", "{tmp}/out"),
        WEIGHTS + "add=1e-46 rounds to 0 in float32, in which the merge is computed",
    ),
    case(
        "merge-factorwise-ranks-differ",
        ranks_differ(
            lambda env, pool: [
                "merge",
                "--pool",
                str(pool),
                "--method",
                "lora_factorwise",
                "--weights",
                "l1=0.5,l3=0.5",
                "--as-adapter",
                "--out",
                str(env.tmp / "out"),
            ]
        ),
        FACTORWISE,
        RANK_8,
        "use method 'linear', which merges adapters of any rank exactly",
    ),
    case(
        "pool-check-factorwise-ranks-differ",
        ranks_differ(lambda env, pool: ["pool", "check", str(pool), "--method", "lora_factorwise"]),
        FACTORWISE,
        RANK_8,
    ),
    case(
        "merge-adapter-of-a-full-model-pool",
        command(
            "merge", "--pool", "{pool}/checkpoints.yaml", "--weights", "add=1", "--as-adapter", "--out", "{tmp}/out"
        ),
        "--as-adapter needs a pool of LoRA members only",
    ),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file (size, modification time) and directory under ``root``: what a command may not change."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
        for p in root.rglob("*")
    }


@pytest.fixture
def env(
    request: pytest.FixtureRequest, pool_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hf_cache: Path
) -> Env:
    """Pristine copies of the tiny pool (``pool_copy`` puts it under tmp_path/tiny) and an experiment on it; empty
    Hugging Face caches."""
    case: Case = request.node.callspec.params["bad"]
    run = None
    if case.needs_run:
        run = tmp_path / "run"
        shutil.copytree(request.getfixturevalue("dummy_run"), run)
    write_experiment(tmp_path, pool_copy / "pool" / "checkpoints.yaml", pool_copy / "tasks")
    monkeypatch.chdir(tmp_path)  # relative defaults (runs/, checkpoints.yaml) land in the case's directory
    return Env(tmp_path, run)


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("the search started: the bad input was not refused before any work")


@pytest.mark.parametrize("bad", CASES)
def test_bad_input(bad: Case, env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from optimizer.search.driver import Search

    monkeypatch.setattr(Search, "run", _must_not_run)
    argv = bad.build(env)
    before = snapshot(env.tmp)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits by itself
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mergefront: error: "), f"exit {code}, stderr:\n{err}"
    for piece in bad.expected:
        assert env.fill(piece) in lines[0], f"{env.fill(piece)!r} is not in\n{lines[0]}"
    assert out == "", f"partial output on stdout:\n{out}"
    after = snapshot(env.tmp)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"the command left partial output or changed its input: {changed}"


def test_the_catalogue_is_large_and_its_ids_are_unique() -> None:
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30
