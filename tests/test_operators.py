"""Every merge operator against a computation written out independently in the test."""

from __future__ import annotations

import zlib

import pytest
import torch

from evaluators.merge import OPERATORS, MergeSpec, TensorInputs
from evaluators.pool.adapters import LowRank


def run(method: str, x: TensorInputs, w: list[float], **knobs: float) -> torch.Tensor:
    """The operator's merge written into a float32 tensor, as the engine writes it."""
    out = torch.empty(x.shape)
    OPERATORS.get(method).write(x, torch.tensor(w), MergeSpec(method=method, **knobs), out)
    return out


def checkpoints(*rows: list[float], base: list[float] | None = None) -> TensorInputs:
    """Members are the given rows; an optional base is an extra source that no member uses."""
    sources = [torch.tensor(r) for r in rows] + ([torch.tensor(base)] if base is not None else [])
    mix = torch.zeros(len(rows), len(sources))
    mix[:, : len(rows)] = torch.eye(len(rows))
    return TensorInputs(
        "t", tuple(sources[0].shape), sources, mix, (None,) * len(rows), len(rows) if base is not None else None
    )


def test_linear() -> None:
    x = checkpoints([1.0, 2.0], [3.0, 4.0], [-1.0, 0.0])
    # 0.5*[1,2] + 0.25*[3,4] + 0.25*[-1,0] = [1, 2]
    torch.testing.assert_close(run("linear", x, [0.5, 0.25, 0.25]), torch.tensor([1.0, 2.0]))


def test_task_arithmetic_with_negative_weight() -> None:
    x = checkpoints([2.0, 2.0], [0.0, 4.0], base=[1.0, 1.0])  # τ1 = [1, 1], τ2 = [-1, 3]
    # θ0 + λ(1.0*τ1 - 0.5*τ2) = [1,1] + 2*([1,1] - [-0.5, 1.5]) = [1,1] + 2*[1.5, -0.5] = [4, 0]
    torch.testing.assert_close(run("task_arithmetic", x, [1.0, -0.5], scale=2.0), torch.tensor([4.0, 0.0]))


def test_ties_by_hand() -> None:
    base = [0.0, 0.0, 0.0, 0.0]
    x = checkpoints([3.0, -1.0, 0.5, 2.0], [-2.0, -2.0, 1.0, 0.1], base=base)
    # trim to 2 of 4: τ̂1 = [3, 0, 0, 2], τ̂2 = [-2, -2, 0, 0]
    # w=0.5 each: Σ w τ̂ = [0.5, -1, 0, 1] -> signs [+, -, 0, +]
    # agreeing means: [3 (only τ̂1), -2 (only τ̂2), 0 (no sign), 2]
    torch.testing.assert_close(run("ties", x, [0.5, 0.5], density=0.5), torch.tensor([3.0, -2.0, 0.0, 2.0]))
    # weights change the election: w=[0.2, 0.8] -> Σ = [0.6-1.6, -1.6, 0, 0.4] -> [-, -, 0, +]
    torch.testing.assert_close(
        run("ties", x, [0.2, 0.8], density=0.5, scale=0.5), 0.5 * torch.tensor([-2.0, -2.0, 0.0, 2.0])
    )


def _mask(seed: int, key: str, member: int, shape: tuple[int, ...], p: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}:{member}".encode()))
    return (torch.rand(shape, generator=gen) >= p).float()


def test_dare_linear_formula_and_determinism() -> None:
    torch.manual_seed(0)
    rows = [torch.randn(1000).tolist() for _ in range(2)]
    base = torch.randn(1000)
    x = checkpoints(*rows, base=base.tolist())
    got = run("dare_linear", x, [0.7, 0.3], drop=0.4, seed=5, scale=1.5)
    taus = [torch.tensor(r) - base for r in rows]
    expected = base + 1.5 * sum(
        w * t * _mask(5, "t", i, (1000,), 0.4) / 0.6 for i, (w, t) in enumerate(zip([0.7, 0.3], taus, strict=True))
    )
    torch.testing.assert_close(got, expected)
    assert torch.equal(got, run("dare_linear", x, [0.7, 0.3], drop=0.4, seed=5, scale=1.5))
    assert not torch.equal(got, run("dare_linear", x, [0.7, 0.3], drop=0.4, seed=6, scale=1.5))
    kept = _mask(5, "t", 0, (1000,), 0.4).mean().item()
    assert 0.55 < kept < 0.65


def test_dare_ties_is_ties_consensus_of_the_dropped_vectors() -> None:
    x = checkpoints([1.0, -2.0, 3.0, -4.0], [2.0, 2.0, -1.0, -1.0], base=[0.0] * 4)
    got = run("dare_ties", x, [0.5, 0.5], drop=0.5, seed=1)
    d = [
        torch.tensor(r) * _mask(1, "t", i, (4,), 0.5) / 0.5
        for i, r in enumerate([[1.0, -2.0, 3.0, -4.0], [2.0, 2.0, -1.0, -1.0]])
    ]
    expected = []
    for e in range(4):
        s = torch.sign(0.5 * d[0][e] + 0.5 * d[1][e])
        agree = [i for i in range(2) if d[i][e] != 0 and torch.sign(d[i][e]) == s]
        expected.append(sum(0.5 * d[i][e] for i in agree) / (0.5 * len(agree)) if agree else 0.0)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32))


def lora_inputs(factors: list[LowRank], base: torch.Tensor) -> TensorInputs:
    return TensorInputs("w", tuple(base.shape), [base], torch.ones(len(factors), 1), tuple(factors), None)


def test_lora_exact_and_factorwise() -> None:
    torch.manual_seed(0)
    base = torch.randn(6, 5)
    a1, a2, b1, b2 = torch.randn(2, 5), torch.randn(2, 5), torch.randn(6, 2), torch.randn(6, 2)
    w = [0.25, 0.75]
    exact = base + 0.25 * 2.0 * b1 @ a1 + 0.75 * 2.0 * b2 @ a2
    x = lora_inputs([LowRank(a1, b1, 2.0), LowRank(a2, b2, 2.0)], base)
    torch.testing.assert_close(run("linear", x, w), exact)
    factorwise = base + 2.0 * (0.25 * b1 + 0.75 * b2) @ (0.25 * a1 + 0.75 * a2)
    torch.testing.assert_close(run("lora_factorwise", x, w), factorwise)
    assert not torch.allclose(factorwise, exact, atol=1e-3)
    shared = lora_inputs([LowRank(a1, b1, 2.0), LowRank(a1, b2, 2.0)], base)  # one factor shared: the two agree
    torch.testing.assert_close(run("lora_factorwise", shared, w), run("linear", shared, w))


@pytest.mark.parametrize("method", ["task_arithmetic", "ties", "dare_linear", "dare_ties"])
def test_methods_that_need_a_base_say_so(method: str) -> None:
    with pytest.raises(ValueError, match="needs a merge base"):
        run(method, checkpoints([1.0], [2.0]), [0.5, 0.5])
