"""Loading checkpoints from other people never runs their code unless the user opts in, and then as
little as possible: pickle weights only with --allow-pickle and through weights_only=True; a model's
own Python code only where its pool entry says trust_remote_code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from evaluators.pool import load_pool
from optimizer.cli import main
from tests.helpers import tiny_llama, write_pool


def pickle_member(directory: Path) -> Path:
    """Turn a save_pretrained directory into one holding only ``pytorch_model.bin``."""
    weights = directory / "model.safetensors"
    torch.save(load_file(weights), directory / "pytorch_model.bin")
    weights.unlink()
    return directory


class Hostile:
    """Unpickling this runs ``touch MARKER``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def one_error_line(capsys: pytest.CaptureFixture[str], expected: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mergefront: error:") and expected in err, err


def test_pickle_weights_need_allow_pickle_and_then_merge_like_safetensors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tiny_llama(tmp_path / "a", 0), tiny_llama(tmp_path / "b", 1)
    pool_file = write_pool(tmp_path, f"members:\n  - {{name: a, path: {a}}}\n  - {{name: b, path: {b}}}\n")
    merge = ["merge", "--pool", str(pool_file), "--weights", "a=0.25,b=0.75"]
    assert main([*merge, "--out", str(tmp_path / "safe")]) == 0
    expected = load_file(tmp_path / "safe" / "model.safetensors")

    pickle_member(b)
    capsys.readouterr()
    assert main([*merge, "--out", str(tmp_path / "refused")]) == 2
    one_error_line(capsys, "pass --allow-pickle")
    assert not (tmp_path / "refused").exists()

    assert main([*merge, "--out", str(tmp_path / "opted"), "--allow-pickle"]) == 0
    got = load_file(tmp_path / "opted" / "model.safetensors")
    assert got.keys() == expected.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(got[key], tensor, rtol=0, atol=0)


def test_allow_pickle_never_runs_code_in_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tiny_llama(tmp_path / "a", 0), pickle_member(tiny_llama(tmp_path / "b", 1))
    marker = tmp_path / "ran"
    torch.save({"model.embed_tokens.weight": torch.zeros(2), "payload": Hostile(marker)}, b / "pytorch_model.bin")
    pool_file = write_pool(tmp_path, f"members:\n  - {{name: a, path: {a}}}\n  - {{name: b, path: {b}}}\n")
    assert main(["pool", "check", str(pool_file), "--allow-pickle"]) == 2
    one_error_line(capsys, "refused by torch.load(weights_only=True)")
    assert not marker.exists()


def test_a_pool_file_cannot_opt_into_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = tiny_llama(tmp_path / "a", 0)
    pool_file = write_pool(tmp_path, f"allow_pickle: true\nmembers:\n  - {{name: a, path: {a}}}\n")
    assert main(["pool", "check", str(pool_file)]) == 2
    one_error_line(capsys, "'allow_pickle' cannot be set in a pool file")


REMOTE_CODE = """
import os
from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM

Path(os.environ["MERGEFRONT_TEST_MARKER"]).touch()  # proof that this file ran


class Config(LlamaConfig):
    pass


class Model(LlamaForCausalLM):
    config_class = Config
"""


def test_remote_code_runs_only_where_the_pool_entry_trusts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tiny_llama(tmp_path / "a", 0), tiny_llama(tmp_path / "b", 1)
    marker = tmp_path / "ran"
    monkeypatch.setenv("MERGEFRONT_TEST_MARKER", str(marker))
    config = json.loads((a / "config.json").read_text())
    (a / "custom.py").write_text(REMOTE_CODE)
    (a / "config.json").write_text(
        json.dumps({**config, "auto_map": {"AutoConfig": "custom.Config", "AutoModelForCausalLM": "custom.Model"}})
    )
    plain = write_pool(tmp_path, f"members:\n  - {{name: a, path: {a}}}\n  - {{name: b, path: {b}}}\n")
    assert main(["pool", "check", str(plain)]) == 2
    one_error_line(capsys, "set 'trust_remote_code: true' on its entry")
    assert not load_pool(plain).trusts_remote_code and not marker.exists()

    trusted = write_pool(
        tmp_path, f"members:\n  - {{name: a, path: {a}, trust_remote_code: true}}\n  - {{name: b, path: {b}}}\n"
    )
    assert load_pool(trusted).trusts_remote_code
    assert main(["pool", "check", str(trusted)]) == 0
    assert marker.exists(), "the trusted entry's own code builds the model"
    # trust is per entry: the model is built from the `tokenizer` entry, here the untrusted b
    other = write_pool(
        tmp_path,
        f"tokenizer: b\nmembers:\n  - {{name: a, path: {a}, trust_remote_code: true}}\n  - {{name: b, path: {b}}}\n",
    )
    assert not load_pool(other).trusts_remote_code
