"""Paired comparisons: the interval is scipy's bootstrap of the paired differences, stratified by task, and the
verdict follows the interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from evaluators.scoring.compare import paired_difference


def test_one_task_is_scipys_paired_bootstrap_of_the_differences() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, 150).astype(float), rng.integers(0, 2, 150).astype(float)
    ours = paired_difference({"t": a}, {"t": b}, resamples=4000, seed=11)
    reference = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
        paired=True,
        n_resamples=4000,
        method="percentile",
        rng=np.random.default_rng(11),
    ).confidence_interval
    assert ours.estimate == pytest.approx(a.mean() - b.mean())
    # the same draws up to the batch order scipy uses: equal to the resampling's precision
    assert ours.low == pytest.approx(reference.low, abs=0.02) and ours.high == pytest.approx(reference.high, abs=0.02)


def test_macro_average_weights_tasks_equally_and_resamples_each_on_its_own() -> None:
    a = {"small": [1.0] * 10, "large": [0.0] * 990}
    b = {"small": [0.0] * 10, "large": [0.0] * 990}
    diff = paired_difference(a, b)
    assert diff.estimate == pytest.approx(0.5)  # (1 - 0) / 2 tasks, not 10 / 1000 examples
    # every resample keeps 10 examples of "small", all of them differing by 1: the interval is a point
    assert (diff.low, diff.high, diff.verdict) == (pytest.approx(0.5), pytest.approx(0.5), "beats")


def test_verdicts_follow_the_interval() -> None:
    rng = np.random.default_rng(0)
    same = {"x": rng.integers(0, 2, 200).tolist()}
    assert str(paired_difference(same, same)) == "+0.000 [+0.000, +0.000] ties"
    noise = {"x": rng.integers(0, 2, 200).tolist()}
    tie = paired_difference(same, noise)
    assert tie.low < tie.estimate < tie.high and tie.verdict == "ties"  # two independent coin series
    better = {"x": [1.0] * 200}
    assert paired_difference(better, same).verdict == "beats"
    assert paired_difference(same, better).verdict == "loses"


def test_unpaired_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="same tasks"):
        paired_difference({"x": [1.0]}, {"y": [1.0]})
    with pytest.raises(ValueError, match="task 'x': 2 examples on one side and 1"):
        paired_difference({"x": [1.0, 0.0]}, {"x": [1.0]})


def test_per_sample_values_are_the_metric_by_document_for_averaged_metrics_only() -> None:
    from evaluators.scoring.lmeval import _per_sample
    from evaluators.scoring.tasks import TaskSpec

    logged = [
        {"doc_id": 2, "filter": "none", "acc": 0, "perplexity": -3.5},
        {"doc_id": 0, "filter": "none", "acc": 1, "perplexity": -0.5},
        {"doc_id": 1, "filter": "other", "acc": 0, "perplexity": -9.0},  # another filter's answer
        {"doc_id": 1, "filter": "none", "acc": 1, "perplexity": -1.0},
    ]
    assert _per_sample(TaskSpec(task="t"), logged, {"acc"}) == (1.0, 1.0, 0.0)  # doc 0, 1, 2
    # perplexity is aggregated from log-likelihoods, not averaged: no per-example values to resample
    assert _per_sample(TaskSpec(task="t", metric="perplexity"), logged, {"acc"}) == ()
    assert _per_sample(TaskSpec(task="t"), [{"doc_id": 0, "filter": "none", "acc": ["a", "b"]}], {"acc"}) == ()
