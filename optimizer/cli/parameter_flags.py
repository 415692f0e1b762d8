"""The ``merge`` command's flags for merge-method parameters, made from the methods' declarations
(``evaluators.merge.parameters``), so a new method's parameter is a new flag without editing the CLI;
and ``--normalize``/``--no-normalize``, whose help names the methods that normalize (``Operator.normalize``).

Imported by the CLI at start-up; ``evaluators.merge`` (torch) only when the merge command is parsed.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from evaluators.core.errors import ConfigError

if TYPE_CHECKING:
    from evaluators.merge import MergeSpec


class ParameterFlag(argparse.Action):
    """Stores a merge parameter's value; notes a former spelling (``--scale``) for one deprecation line."""

    def __call__(self, parser, namespace, values, option_string=None):
        """argparse's hook: store the value under ``parameter:NAME`` and record the flag when it was a former
        spelling; one parameter under two spellings (``--lambda`` and ``--scale``) is refused."""
        spelled = getattr(namespace, "parameter_flags", {})
        if option_string is not None and spelled.get(self.dest, option_string) != option_string:
            name = self.dest.removeprefix("parameter:")
            parser.error(
                f"argument {option_string}: not allowed with {spelled[self.dest]} (both set '{name}'; give --{name} once)"
            )
        namespace.parameter_flags = {**spelled, self.dest: option_string}
        setattr(namespace, self.dest, values)
        if option_string is not None and option_string[2:] != self.dest.removeprefix("parameter:"):
            namespace.former_flags = [*getattr(namespace, "former_flags", []), option_string]


def add_parameter_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per merge-method parameter, from the methods' declarations (``--lambda``; ``--scale``, its
    former spelling, still parses but is left out of the help), and ``--normalize``/``--no-normalize``."""
    from evaluators.merge import OPERATORS, declared_parameters

    by_default = {
        when: ", ".join(name for name in OPERATORS.names() if OPERATORS.get(name).normalize is when)
        for when in (True, False, None)
    }
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        help="divide the weights by their sum (mergekit's `normalize`); default: on for "
        f"{by_default[True]} (weighted means, as mergekit's linear), off for {by_default[False]} (task vectors "
        f"added, as in mergekit); the weights' scale does not change {by_default[None]}, which refuse --no-normalize",
    )

    for param in declared_parameters().values():
        former = [f"--{name}" for name in param.formerly]
        options = {"dest": f"parameter:{param.name}", "type": int if param.integer else float, "action": ParameterFlag}
        parser.add_argument(
            f"--{param.name}",
            metavar=param.name.upper(),
            help=param.help + (f" (formerly {', '.join(former)})" if former else ""),
            **options,  # type: ignore[arg-type]
        )
        if former:
            parser.add_argument(*former, help=argparse.SUPPRESS, **options)  # type: ignore[arg-type]


def given_parameters(args: argparse.Namespace) -> dict[str, float]:
    """The parameter flags given, by parameter name; a former spelling logs one deprecation line."""
    from evaluators.merge import declared_parameters

    declared = declared_parameters()
    for flag in getattr(args, "former_flags", []):
        next(p for p in declared.values() if p.spelled(flag[2:])).deprecated(flag[2:], "mergefront merge")
    given = {name: getattr(args, f"parameter:{name}", None) for name in declared}
    return {name: value for name, value in given.items() if value is not None}


def weights_used(args: argparse.Namespace, spec: MergeSpec, members: list[str]) -> tuple[dict[str, float], str]:
    """Every member's weight for the merge (0 where ``--weights`` leaves it out) and the line that says which were
    used: divided by their sum where ``--normalize``, or mergekit's default for the method, says so. ConfigError for
    a sum that cannot be divided by (0, or so near it that a weight overflows float32) and for ``--no-normalize`` on
    a method the weights' scale does not change."""
    import torch

    given = {m: float(args.weights[m]) for m in members if m in args.weights}
    shown = " ".join(f"{m}={w:g}" for m, w in given.items())
    default = spec.operator.normalize
    if default is None and args.normalize is False:
        raise ConfigError(
            f"--no-normalize: multiplying every weight by one positive number does not change a {spec.method} merge, "
            "so there is nothing to normalize; leave the flag out"
        )
    note = None
    if default is None:
        note = f"as given; their scale does not change a {spec.method} merge"
    elif args.normalize is False:
        note = "as given: --no-normalize"
    elif not (default or args.normalize):
        note = f"as given, as mergekit's {spec.method} does by default; --normalize divides them by their sum"
    if note is not None:
        return {m: given.get(m, 0.0) for m in members}, f"weights used: {shown} ({note})"
    total = math.fsum(given.values())
    scaled = {m: w / total for m, w in given.items()} if total else {}
    if not scaled or not torch.tensor(list(scaled.values()), dtype=torch.float32).isfinite().all():
        raise ConfigError(
            f"--weights {shown} sum to {total:g}, so normalizing them (dividing by the sum, as mergekit's "
            f"normalize does) {'overflows float32' if scaled else 'divides by 0'}; give weights whose sum is "
            "not (near) 0, or pass --no-normalize to use them as given"
        )
    used = " ".join(f"{m}={w:g}" for m, w in scaled.items())
    note = f"{shown} divided by their sum, {total:g}; --no-normalize keeps them as given"
    return {m: scaled.get(m, 0.0) for m in members}, f"weights used: {used} ({note})"
