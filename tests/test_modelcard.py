"""The model card an export or a merge writes, read back by huggingface_hub as the Hub would: its front matter
(base_model, library_name, tags, a license only when the merged members agree), zero-weight members left out,
and the versions that made it."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from huggingface_hub import ModelCard

from optimizer.cli import main


def _merge(pool_dir: Path, out: Path, weights: str) -> ModelCard:
    pool = pool_dir / "pool" / "checkpoints.yaml"
    assert main(["merge", "--pool", str(pool), "--weights", weights, "--out", str(out)]) == 0
    return ModelCard.load(out / "README.md")


def _own_card(directory: Path, license: str) -> None:
    (directory / "README.md").write_text(f"---\nlicense: {license}\n---\n# a member\n")


def test_the_card_is_a_hub_card_of_the_merged_members(pool_copy: Path, tmp_path: Path) -> None:
    card = _merge(pool_copy, tmp_path / "m", "add=0.7,sort=0.3")
    assert card.data.base_model is None  # local folders are no Hub model ids (tests/test_hub.py: a repo id is listed)
    assert card.data.library_name == "transformers"
    assert set(card.data.tags) >= {"merge", "mergefront"}
    assert card.data.license is None  # the members' own cards say nothing
    assert "# Merge of 2 checkpoints" in card.text
    assert "| reverse |" not in card.text and "| add | checkpoint | 0.7000 |" in card.text
    for package in ("mergefront", "lm_eval", "transformers"):
        assert f"{package} {version(package)}" in card.text


def test_a_license_is_named_only_when_every_merged_member_agrees(pool_copy: Path, tmp_path: Path) -> None:
    members = pool_copy / "pool"
    for name in ("add", "sort"):
        _own_card(members / name, "apache-2.0")
    _own_card(members / "reverse", "mit")  # not merged below: its license does not count
    assert _merge(pool_copy, tmp_path / "agree", "add=0.7,sort=0.3").data.license == "apache-2.0"
    assert _merge(pool_copy, tmp_path / "differ", "add=0.5,reverse=0.5").data.license is None
    assert _merge(pool_copy, tmp_path / "unknown", "add=0.5,shift=0.5").data.license is None
    (members / "sort" / "README.md").write_text("---\nlicense: [oops\n---\n")  # a member card that does not parse
    assert _merge(pool_copy, tmp_path / "broken", "add=0.7,sort=0.3").data.license is None
