"""A minimal, deterministic training loop for the toy models (CPU, seconds to minutes)."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tqdm import tqdm
from transformers import PreTrainedModel

from toy.skills import SKILLS, Skill


@contextlib.contextmanager
def reproducible_cpu() -> Iterator[None]:
    """Train on one CPU thread with torch's deterministic algorithms, restoring both settings after.

    One thread because the toy model gains nothing from more: with two other CPU-bound processes on a
    2-CPU machine, two threads fell from 28 to under 1 step/s (each thread waiting on the other). One
    thread also fixes the order of every float reduction, so two builds on one machine are bit-equal.
    """
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(strict)


@dataclass(frozen=True)
class Stage:
    """One training stage: a data mixture (skill -> weight) and its optimiser settings."""

    mixture: dict[str, float]
    steps: int
    lr: float
    batch_size: int = 64
    warmup: float = 0.05


class CharEncoder:
    """Maps skill text to token ids with the toy tokenizer's vocabulary (no per-call overhead)."""

    def __init__(self, vocab: dict[str, int], eos_id: int, pad_id: int) -> None:
        self.vocab, self.eos_id, self.pad_id = vocab, eos_id, pad_id

    def batch(self, examples: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        """Right-padded ids, attention mask, and labels on the target (+ eos) only."""
        rows = []
        for prompt, target in examples:
            p = [self.vocab[c] for c in prompt]
            t = [self.vocab[c] for c in target] + [self.eos_id]
            rows.append((p + t, [-100] * len(p) + t))
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), self.pad_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row_ids, row_labels) in enumerate(rows):
            ids[i, : len(row_ids)] = torch.tensor(row_ids)
            labels[i, : len(row_labels)] = torch.tensor(row_labels)
            mask[i, : len(row_ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _draw_batch(
    skills: list[Skill], probs: list[float], rng: random.Random, size: int, exclude: set[str]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    while len(out) < size:
        prompt, target = rng.choices(skills, probs)[0].draw(rng)
        if prompt not in exclude:
            out.append((prompt, target))
    return out


def _lr_at(stage: Stage, step: int) -> float:
    warm = max(1, int(stage.warmup * stage.steps))
    if step < warm:
        return stage.lr * (step + 1) / warm
    progress = (step - warm) / max(1, stage.steps - warm)
    return stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_stage(
    model: PreTrainedModel,
    encoder: CharEncoder,
    stage: Stage,
    seed: int,
    exclude: set[str],
    progress: tqdm | None = None,
    until: int | None = None,
    after_step: Callable[[int], None] | None = None,
) -> float:
    """Train ``model`` in place for one stage; returns the mean loss of the last 10% of steps.

    ``exclude`` holds the evaluation prompts, so no scored example is ever trained on. ``until``
    stops after that many steps of the same schedule: an early checkpoint of the full stage.
    ``after_step`` is called with the number of steps taken after each one, to save checkpoints along
    one run (cheaper than one run per ``until``, and the same weights).
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    skills = [SKILLS[name] for name in stage.mixture]
    probs = list(stage.mixture.values())
    opt = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=0.0)
    model.train()
    tail: list[float] = []
    for step in range(stage.steps if until is None else min(until, stage.steps)):
        for group in opt.param_groups:
            group["lr"] = _lr_at(stage, step)
        loss = model(**encoder.batch(_draw_batch(skills, probs, rng, stage.batch_size, exclude))).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= stage.steps * 0.9:
            tail.append(loss.item())
        if progress is not None:
            progress.update(1)
        if after_step is not None:
            after_step(step + 1)
    model.eval()
    return sum(tail) / max(1, len(tail))
