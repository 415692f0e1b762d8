"""How a search shows its trials as they finish: a bar on a terminal, with the front's size and its best value per
objective; one log line per finished trial everywhere else (a log file, cron, ``--no-progress``), where a bar's
frames would be carriage-return noise and a silent search looks hung. The CLI decides which (a bar only when asked
for and stderr, where tqdm draws, is a terminal); a failed trial is the loop's warning in either."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Self

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from evaluators.scoring.score import score_text
from optimizer.store.rows import TrialRecord

log = logging.getLogger(__name__)


def short_labels(labels: Sequence[str]) -> list[str]:
    """The objectives as a bar or log line names them: the task of a ``task/metric`` label where that tells them
    apart, else the labels themselves."""
    short = [label.split("/")[0] for label in labels]
    return short if len(set(short)) == len(short) else list(labels)


class TrialLines:
    """One INFO line per complete trial: its number, source and scores, the front's size and the count done."""

    def __init__(self, labels: Sequence[str], signs: Sequence[float], budget: int) -> None:
        self.labels, self.signs, self.budget = list(labels), list(signs), budget
        self.names = short_labels(labels)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to close: the lines are written."""

    def trial(self, record: TrialRecord, front: Sequence[TrialRecord], done: int, failed: int) -> None:
        """Report ``record``, just stored; ``front``: the run's front now, ``done``: complete trials of the run,
        ``failed``: failed trials of this call."""
        if not record.complete:
            return
        how = "finished" if record.full else f"screened ({record.fidelity})"
        log.info(
            "trial %d %s (%s): %s; front %d; %d/%d done",
            record.trial,
            how,
            record.source,
            self.scores(record),
            len(front),
            done,
            self.budget,
        )

    def scores(self, record: TrialRecord) -> str:
        """``add 0.675±0.033, reverse 0.695±0.033`` (no ± where the trial has no standard error)."""
        return ", ".join(
            f"{name} {score_text(record.scores[label], record.stderr.get(label))}"
            for name, label in zip(self.names, self.labels, strict=True)
        )


class TrialBar(TrialLines):
    """A tqdm bar over the trial budget; its postfix shows the front's size, its best value per objective and the
    failed trials. Log lines (a failed trial's warning, a worker's restart) print above it instead of through it."""

    def __init__(self, labels: Sequence[str], signs: Sequence[float], budget: int, done: int) -> None:
        super().__init__(labels, signs, budget)
        self._done = done
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        """Draw the bar (``disable=False``: it was asked for, whatever ``TQDM_DISABLE`` says)."""
        self._bar = self._stack.enter_context(
            tqdm(
                total=self.budget,
                initial=self._done,
                unit="trial",
                desc="search",
                dynamic_ncols=True,
                disable=False,
            )
        )
        self._stack.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the bar and give the log its handlers back."""
        self._stack.close()

    def trial(self, record: TrialRecord, front: Sequence[TrialRecord], done: int, failed: int) -> None:
        """Advance the bar to ``done`` and show the front's standing."""
        self._bar.update(done - self._bar.n)
        self._bar.set_postfix_str(self.postfix(front, failed))

    def postfix(self, front: Sequence[TrialRecord], failed: int) -> str:
        """``front 4 | best add 1.234, reverse 0.695 | 1 failed``: best by each objective's direction."""
        parts = [f"front {len(front)}"]
        if front:
            best = [
                f"{name} {sign * max(sign * r.scores[label] for r in front):.3f}"
                for name, label, sign in zip(self.names, self.labels, self.signs, strict=True)
            ]
            parts.append("best " + ", ".join(best))
        if failed:
            parts.append(f"{failed} failed")
        return " | ".join(parts)


def trial_progress(labels: Sequence[str], signs: Sequence[float], budget: int, done: int, bar: bool) -> TrialLines:
    """A bar (``bar``) or log lines over a search of ``budget`` trials, ``done`` of them complete already; enter it
    around the loop."""
    return TrialBar(labels, signs, budget, done) if bar else TrialLines(labels, signs, budget)
