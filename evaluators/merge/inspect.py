"""``mergefront pool check``: what each member is, how far it sits from the merge base, and
whether a transfer member's two bases are close enough for its diff vector to carry over.

Everything is accumulated one tensor at a time, so any pool size fits in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from evaluators.merge import MergeSpec
from evaluators.merge.engine import PoolMerger
from evaluators.pool.config import TransferMember
from evaluators.pool.plan import PoolPlan
from evaluators.pool.tiers import DiskTier

# Heuristic thresholds for the transfer warning (Lin et al. 2025: transfer works between linearly
# connected versions and can collapse from a distant early checkpoint). Calibrated on the toy pool only.
FAR = 0.25  # ‖θ_target_base − θ_source_base‖ / ‖θ_source_base‖


@dataclass
class TransferSignal:
    """How a transfer member's two bases relate, with the fine-tuning direction and with each other."""

    cosine: float  # cos(θ_target_base − θ_source_base, θ_source_ft − θ_source_base)
    relative_distance: float  # ‖θ_target_base − θ_source_base‖ / ‖θ_source_base‖

    @property
    def warning(self) -> str | None:
        """Why the transfer may not carry over (the bases are far apart, or moved against the fine-tune), else None.
        Heuristic: thresholds calibrated on the toy pool only."""
        if self.relative_distance > FAR:
            return f"target base is far from the source base (relative distance {self.relative_distance:.2f} > {FAR}); the transfer is unlikely to work"
        if self.cosine < 0:
            return "the bases moved against the fine-tuning direction (negative cosine); check the transfer on held-out tasks"
        return None


@dataclass
class MemberReport:
    """One row of ``pool check``: a member, its size and dtype, its distance to the merge base and, for a transfer
    member, its transfer signal."""

    name: str
    kind: str
    params: int
    dtype: str
    distance: float | None  # ‖value − θ₀‖ / ‖θ₀‖
    transfer: TransferSignal | None


def inspect_members(plan: PoolPlan) -> list[MemberReport]:
    """One report per pool member, in pool order, from a single pass over the tensors read from disk on the CPU
    (``params`` counts floating tensors only; distances are None without a merge base)."""
    members = plan.pool.members
    k = len(members)
    dist2 = torch.zeros(k, dtype=torch.float64)
    base2 = 0.0
    transfers = {i: m for i, m in enumerate(members) if isinstance(m, TransferMember)}
    sums = {i: torch.zeros(4, dtype=torch.float64) for i in transfers}  # dot, ‖d_base‖², ‖diff‖², ‖θ_sb‖²
    params = 0
    cpu = torch.device("cpu")
    merger = PoolMerger(plan, MergeSpec(), DiskTier(plan, cpu), cpu)
    for key in merger.floating:
        x = merger.inputs(key)
        params += math.prod(plan.tensors[key].shape)
        if plan.base_index is not None:
            base = x.base.double()
            dist2 += ((x.values().double() - base) ** 2).reshape(k, -1).sum(dim=1)
            base2 += float((base**2).sum())
        for i, transfer in transfers.items():
            tb, sft, sb = (
                x.dense(x.unit(plan.source_index(p))).double()
                for p in (plan.pool.bases[transfer.target_base].path, transfer.source_finetune, transfer.source_base)
            )
            d_base, diff = tb - sb, sft - sb
            sums[i] += torch.tensor([(d_base * diff).sum(), (d_base**2).sum(), (diff**2).sum(), (sb**2).sum()])
        merger.tier.done(key)
    reports = []
    for i, m in enumerate(members):
        distance = math.sqrt(dist2[i] / base2) if plan.base_index is not None and base2 > 0 else None
        signal = None
        if i in transfers:
            dot, nb, nd, ns = sums[i].tolist()
            signal = TransferSignal(
                dot / math.sqrt(nb * nd) if nb > 0 and nd > 0 else 0.0, math.sqrt(nb / ns) if ns else 0.0
            )
        reports.append(MemberReport(m.name, m.kind, params, plan.member_dtype(i), distance, signal))
    return reports


def format_reports(plan: PoolPlan, reports: list[MemberReport]) -> str:
    """The ``pool check`` table: one line per member, then the files read, then every warning."""
    base = plan.pool.merge_base or "(none)"
    lines = [f"pool '{plan.pool.name}': {len(reports)} members, merge base {base}, vocabulary {plan.vocab}", ""]
    lines.append(f"{'member':<16}{'kind':<12}{'params':>12}  {'dtype':<10}{'dist. to base':>14}  transfer signal")
    warnings = []
    for r in reports:
        dist = f"{r.distance:.4f}" if r.distance is not None else "-"
        signal = f"cos {r.transfer.cosine:+.3f}, rel. dist {r.transfer.relative_distance:.3f}" if r.transfer else "-"
        lines.append(f"{r.name:<16}{r.kind:<12}{r.params:>12,}  {r.dtype:<10}{dist:>14}  {signal}")
        if r.transfer and r.transfer.warning:
            warnings.append(f"warning: member '{r.name}': {r.transfer.warning}")
    lines += ["", *_files_lines(plan, warnings)]
    return "\n".join(lines + ([""] + warnings if warnings else []))


def _files_lines(plan: PoolPlan, warnings: list[str]) -> list[str]:
    """Which files each directory contributes, and the model the worker builds: what transformers would load."""
    config = plan.model_config()
    model = (
        f"{(config.architectures or ['?'])[0]} ({config.model_type}), {str(plan.model_dtype()).removeprefix('torch.')}"
    )
    lines = [f"model: {model}, vocabulary {plan.vocab}, config from {plan.model_dir() / 'config.json'}", "files read:"]
    for src in plan.sources:
        names = ", ".join(p.name for p in src.files.paths)
        lines.append(f"  {src.label:<14} {names} ({len(src.key_of)} tensors)")
        if src.files.ignored:
            warnings.append(
                f"warning: '{src.label}': ignored {', '.join(src.files.ignored)} in {src.directory} (transformers does not read them either)"
            )
        if src.ignored:
            warnings.append(
                f"warning: '{src.label}': tensors transformers does not load are left out: {', '.join(src.ignored[:3])}"
            )
    if plan.untie:
        warnings.append(
            "warning: the config ties the output embeddings to the input embeddings but the files hold both; "
            "transformers loads them untied, and so does mergefront"
        )
    return lines
